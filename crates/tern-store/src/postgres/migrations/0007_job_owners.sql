-- Version 7: job owners. The holder (node name + process suffix) running a job, so that
-- a copy of the job published again while that node lives is not run a second time; a
-- job whose owner's presence lease is no longer held may be taken by anyone.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS owner TEXT;
