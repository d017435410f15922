"""Plumbing shared by the stages: process pools, feeds, job records, flags, atomic files,
devices."""
