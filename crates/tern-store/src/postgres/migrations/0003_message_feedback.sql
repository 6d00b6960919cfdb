-- Version 3: Message Feedback (Twilio's Messages/{Sid}/Feedback.json): the outcome a
-- customer last reported for a message, one row per message, deleted with the message.

CREATE TABLE message_feedback (
    message_sid TEXT COLLATE "C" PRIMARY KEY,
    outcome TEXT NOT NULL CHECK (outcome IN ('confirmed', 'unconfirmed')),
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL
);
