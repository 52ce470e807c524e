"""Binds every .feature file in this directory to pytest; steps live in steps/."""

from pytest_bdd import scenarios

scenarios(".")
