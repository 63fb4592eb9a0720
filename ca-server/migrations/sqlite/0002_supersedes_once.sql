-- A certificate is superseded at most once: two concurrent re-enrollments with the same
-- current certificate cannot both succeed.
CREATE UNIQUE INDEX certificates_supersedes_once ON certificates (supersedes) WHERE supersedes IS NOT NULL;
