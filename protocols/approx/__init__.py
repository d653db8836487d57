"""Approximations of non-linear functions on shared fixed-point values, one family per module.

Each function takes an explicit ``method=`` where several exist and documents its domain, its maximum absolute
and relative error there, what it returns outside, and its rounds and bytes.
"""
