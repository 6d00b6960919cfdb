-- Message Feedback (Twilio's Messages/{Sid}/Feedback.json): the outcome a customer last
-- reported for a message, one row per message, deleted with the message.
CREATE TABLE IF NOT EXISTS message_feedback (
    message_sid TEXT PRIMARY KEY,
    outcome TEXT NOT NULL CHECK (outcome IN ('confirmed', 'unconfirmed')),
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
