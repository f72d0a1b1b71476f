-- Source tables owned by the learning app. The product ships them so a fresh
-- database can be filled end to end (synthetic data in development and tests).
CREATE TABLE IF NOT EXISTS students (
    user_id        bigint PRIMARY KEY,
    signup_date    date          NOT NULL,
    accuracy_goal  numeric(4, 3) NOT NULL CHECK (accuracy_goal > 0 AND accuracy_goal <= 1),
    exam_date      date          NOT NULL
);

CREATE TABLE IF NOT EXISTS topics (
    topic_id  integer PRIMARY KEY,
    name      text NOT NULL UNIQUE
);

CREATE TABLE IF NOT EXISTS questions (
    question_id  bigint  PRIMARY KEY,
    topic_id     integer NOT NULL REFERENCES topics (topic_id),
    -- difficulty on the logit scale: P(correct) = inv_logit(ability - difficulty)
    difficulty   double precision NOT NULL
);

CREATE TABLE IF NOT EXISTS attempt_log (
    attempt_id    bigint      PRIMARY KEY,
    user_id       bigint      NOT NULL REFERENCES students (user_id),
    question_id   bigint      NOT NULL REFERENCES questions (question_id),
    topic_id      integer     NOT NULL REFERENCES topics (topic_id),
    is_correct    boolean     NOT NULL,
    time_spent_s  integer     NOT NULL CHECK (time_spent_s >= 0),
    attempted_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS attempt_log_attempted_at_idx ON attempt_log (attempted_at);
CREATE INDEX IF NOT EXISTS attempt_log_user_time_idx ON attempt_log (user_id, attempted_at);

-- The view every model reads. attempt_date is the UTC calendar day.
CREATE OR REPLACE VIEW attempt AS
SELECT a.attempt_id,
       a.user_id,
       a.question_id,
       a.topic_id,
       a.is_correct,
       a.time_spent_s,
       a.attempted_at,
       (a.attempted_at AT TIME ZONE 'UTC')::date AS attempt_date
FROM attempt_log AS a;
