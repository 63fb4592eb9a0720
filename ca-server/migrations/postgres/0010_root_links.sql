-- Root rollover (issue 20, RFC 4210 §4.4): a root generation after G1 carries the two link
-- certificates made with it: NewWithOld (its key and subject, signed by the previous root) and
-- OldWithNew (the previous root's key and subject, signed by it). Every replica serves them in
-- EST /cacerts during the transition. NULL for every other generation.
ALTER TABLE ca_generations ADD COLUMN link_new_with_old BYTEA;
ALTER TABLE ca_generations ADD COLUMN link_old_with_new BYTEA;
