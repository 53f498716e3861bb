"""Tests of the sandbox package alone: no skillbank import (mirrors sandbox/)."""
