//! PROFILES.md §5 error rules, run on every device certificate before it leaves the CA.
