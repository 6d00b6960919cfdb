//! Opt-out keywords, as Twilio's default handling recognises them: the whole body, trimmed
//! and case-insensitive, must be the keyword. Tern applies an opt-out to every number of the
//! account (Twilio scopes it to the sender), which never sends where a handset said STOP.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    OptOut,
    OptIn,
    Help,
}

impl Keyword {
    /// The automatic reply Twilio's default handling sends for each keyword.
    pub fn reply(self) -> &'static str {
        match self {
            Keyword::OptOut => {
                "You have successfully been unsubscribed. You will not receive any more messages from us. Reply START to resubscribe."
            }
            Keyword::OptIn => {
                "You have successfully been re-subscribed to our messages. Reply HELP for help. Reply STOP to unsubscribe. Msg&Data Rates May Apply."
            }
            Keyword::Help => "Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
        }
    }
}

pub fn classify(body: &str) -> Option<Keyword> {
    let word = body.trim();
    let is = |list: &[&str]| list.iter().any(|k| word.eq_ignore_ascii_case(k));
    if is(&[
        "STOP",
        "STOPALL",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        "OPTOUT",
        "REVOKE",
    ]) {
        Some(Keyword::OptOut)
    } else if is(&["START", "YES", "UNSTOP"]) {
        Some(Keyword::OptIn)
    } else if is(&["HELP", "INFO"]) {
        Some(Keyword::Help)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_whole_word_and_case_insensitive() {
        assert_eq!(classify(" stop "), Some(Keyword::OptOut));
        assert_eq!(classify("Unsubscribe"), Some(Keyword::OptOut));
        assert_eq!(classify("START"), Some(Keyword::OptIn));
        assert_eq!(classify("help"), Some(Keyword::Help));
        assert_eq!(classify("please stop"), None);
        assert_eq!(classify(""), None);
    }
}
