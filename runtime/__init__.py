"""Plumbing shared by the stages: process pools and feeds, job records, flags, atomic files, devices."""
