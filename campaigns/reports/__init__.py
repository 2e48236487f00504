"""Reads for the reports: time buckets (`buckets`), a campaign's report (`campaign`) and a
unit's reports page (`unit`)."""
