//! Messaging TwiML parser: the `<Response>` an application returns to an inbound
//! message webhook. Sans-IO and pure: bytes in, verbs out.
//!
//! Supported documents:
//!
//! ```xml
//! <?xml version="1.0" encoding="UTF-8"?>
//! <Response>
//!   <Message to="+15005550006" from="+15005550001" action="https://example.com/a"
//!            method="POST" statusCallback="https://example.com/s">Hello</Message>
//!   <Message><Body>Hi</Body><Media>https://example.com/cat.jpg</Media></Message>
//!   <Redirect method="POST">https://example.com/next</Redirect>
//! </Response>
//! ```
//!
//! Rules, following Twilio's behaviour:
//!
//! * The XML declaration is optional; the root must be `<Response>`.
//! * The text of a plain `<Message>` is trimmed of leading and trailing whitespace;
//!   the text of a nested `<Body>` is kept exactly. Whitespace-only text between
//!   nested elements is ignored. Entities (`&amp;`, `&#233;`, …) and CDATA sections
//!   are decoded. `<Media>` and `<Redirect>` URLs are trimmed.
//! * Unknown verbs, unknown nested elements, text outside verbs, DOCTYPEs and
//!   custom entities are errors. Unknown attributes are ignored.
//!
//! The input is untrusted (it comes from whatever server a customer points a
//! webhook at), so work is bounded: documents over [`MAX_INPUT_BYTES`], with more
//! than [`MAX_VERBS`] verbs or more than [`MAX_MEDIA`] `<Media>` per `<Message>` are
//! rejected, and the parser never panics.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::events::{BytesRef, BytesStart, Event};

/// Largest document accepted, in bytes (64 KiB).
///
/// A messaging reply is a handful of short verbs; Twilio caps a message body at
/// 1600 characters. The cap bounds the memory and CPU one webhook reply can cost
/// us, whatever the remote server sends.
pub const MAX_INPUT_BYTES: usize = 64 * 1024;

/// Most verbs accepted in one `<Response>`.
///
/// Each `<Message>` verb turns into an outbound message (and carrier traffic and
/// billing), so a reply must not be able to fan out without bound: one inbound
/// message may cause at most this many actions.
pub const MAX_VERBS: usize = 10;

/// Most `<Media>` elements in one `<Message>` (Twilio's MMS limit).
pub const MAX_MEDIA: usize = 10;

/// Longest element name quoted back in an error, in bytes.
const MAX_NAME_IN_ERROR: usize = 64;

/// One TwiML messaging verb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// `<Message>`: send a message.
    Message(MessageVerb),
    /// `<Redirect>`: fetch more TwiML from `url`.
    Redirect { url: String, method: Option<String> },
}

/// The `<Message>` verb.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageVerb {
    /// Message text: the trimmed text of `<Message>`, or the exact text of `<Body>`.
    pub body: String,
    pub to: Option<String>,
    pub from: Option<String>,
    pub action: Option<String>,
    pub method: Option<String>,
    pub status_callback: Option<String>,
    /// `<Media>` URLs, in document order.
    pub media: Vec<String>,
}

/// A parsed `<Response>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessagingResponse {
    pub verbs: Vec<Verb>,
}

/// Why a TwiML document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TwimlError {
    #[error("TwiML document is {len} bytes, over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("TwiML <Response> has more than {max} verbs")]
    TooManyVerbs { max: usize },
    #[error("TwiML <Message> has more than {max} <Media> elements")]
    TooManyMedia { max: usize },
    #[error("TwiML document is not valid UTF-8")]
    InvalidUtf8,
    #[error("malformed XML at byte {position}: {message}")]
    Malformed { position: u64, message: String },
    #[error("TwiML document has no root element")]
    MissingRoot,
    #[error("TwiML root element must be <Response>, found <{0}>")]
    WrongRoot(String),
    #[error("TwiML document ends inside <{0}>")]
    UnexpectedEof(&'static str),
    #[error("content after </Response>")]
    TrailingContent,
    #[error("unknown TwiML verb <{0}>")]
    UnknownVerb(String),
    #[error("<{child}> is not allowed inside <{parent}>")]
    UnexpectedElement { parent: &'static str, child: String },
    #[error("text is not allowed {0}")]
    UnexpectedText(&'static str),
    #[error("unknown entity &{0};")]
    UnknownEntity(String),
    #[error("DOCTYPE declarations are not allowed in TwiML")]
    DoctypeNotAllowed,
    #[error("<Message> has more than one <Body>")]
    DuplicateBody,
    #[error("<Message> mixes text with a <Body> element")]
    MixedBody,
    #[error("<Media> must contain a URL")]
    EmptyMedia,
    #[error("<Redirect> must contain a URL")]
    EmptyRedirect,
}

/// Parses a messaging TwiML document.
pub fn parse_messaging(xml: &[u8]) -> Result<MessagingResponse, TwimlError> {
    if xml.len() > MAX_INPUT_BYTES {
        return Err(TwimlError::TooLarge {
            len: xml.len(),
            max: MAX_INPUT_BYTES,
        });
    }
    let xml = xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml);
    let text = std::str::from_utf8(xml).map_err(|_| TwimlError::InvalidUtf8)?;
    Parser::new(text).run()
}

/// Where the parser is in the (fixed-depth) TwiML tree.
enum State {
    /// Before the root element.
    Prolog,
    /// Inside `<Response>`, between verbs.
    Response,
    /// Inside `<Message>`, outside any `<Body>`/`<Media>`.
    Message(PendingMessage),
    /// Inside `<Message><Body>`.
    Body(PendingMessage),
    /// Inside `<Message><Media>`.
    Media(PendingMessage),
    /// Inside `<Redirect>`.
    Redirect { url: String, method: Option<String> },
    /// After `</Response>`.
    Done,
}

#[derive(Default)]
struct PendingMessage {
    verb: MessageVerb,
    /// Text directly inside `<Message>`.
    text: String,
    /// Text of the `<Body>`, if one was seen.
    body: Option<String>,
    /// Text of the `<Media>` being read.
    media: String,
}

impl PendingMessage {
    fn finish(self) -> Result<MessageVerb, TwimlError> {
        let mut verb = self.verb;
        verb.body = match self.body {
            Some(body) if is_xml_whitespace(&self.text) => body,
            Some(_) => return Err(TwimlError::MixedBody),
            None => trim_xml_whitespace(&self.text).to_owned(),
        };
        Ok(verb)
    }
}

struct Parser<'a> {
    reader: Reader<&'a [u8]>,
    state: State,
    verbs: Vec<Verb>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        let reader = Reader::from_str(text);
        // The defaults check that end tags match and reject unmatched ones.
        Parser {
            reader,
            state: State::Prolog,
            verbs: Vec::new(),
        }
    }

    fn run(mut self) -> Result<MessagingResponse, TwimlError> {
        loop {
            let event = match self.reader.read_event() {
                Ok(event) => event,
                Err(e) => return Err(self.malformed(e)),
            };
            match event {
                Event::Start(e) => self.start(&e, false)?,
                Event::Empty(e) => self.start(&e, true)?,
                Event::End(_) => self.end()?,
                Event::Text(t) => {
                    let text = t.xml10_content().map_err(|_| TwimlError::InvalidUtf8)?;
                    self.text(&text)?;
                }
                Event::CData(c) => {
                    let text = c.xml10_content().map_err(|_| TwimlError::InvalidUtf8)?;
                    self.text(&text)?;
                }
                Event::GeneralRef(r) => {
                    let text = self.resolve_ref(&r)?;
                    self.text(&text)?;
                }
                Event::Decl(_) => {
                    if !matches!(self.state, State::Prolog) {
                        return Err(self.malformed_msg("XML declaration not at start"));
                    }
                }
                Event::DocType(_) => return Err(TwimlError::DoctypeNotAllowed),
                Event::Comment(_) | Event::PI(_) => {}
                Event::Eof => break,
            }
        }
        match self.state {
            State::Done => Ok(MessagingResponse { verbs: self.verbs }),
            State::Prolog => Err(TwimlError::MissingRoot),
            State::Response => Err(TwimlError::UnexpectedEof("Response")),
            State::Message(_) => Err(TwimlError::UnexpectedEof("Message")),
            State::Body(_) => Err(TwimlError::UnexpectedEof("Body")),
            State::Media(_) => Err(TwimlError::UnexpectedEof("Media")),
            State::Redirect { .. } => Err(TwimlError::UnexpectedEof("Redirect")),
        }
    }

    /// An opening (or, with `empty`, self-closing) tag.
    fn start(&mut self, e: &BytesStart<'_>, empty: bool) -> Result<(), TwimlError> {
        let name = e.name();
        let name = name.as_ref();
        match std::mem::replace(&mut self.state, State::Done) {
            State::Prolog => {
                if name != b"Response" {
                    return Err(TwimlError::WrongRoot(name_for_error(name)));
                }
                self.state = if empty { State::Done } else { State::Response };
            }
            State::Response => {
                if self.verbs.len() >= MAX_VERBS {
                    return Err(TwimlError::TooManyVerbs { max: MAX_VERBS });
                }
                match name {
                    b"Message" => {
                        let mut verb = MessageVerb::default();
                        for (key, value) in self.attributes(e)? {
                            let slot = match key.as_slice() {
                                b"to" => &mut verb.to,
                                b"from" => &mut verb.from,
                                b"action" => &mut verb.action,
                                b"method" => &mut verb.method,
                                b"statusCallback" => &mut verb.status_callback,
                                _ => continue,
                            };
                            *slot = Some(value);
                        }
                        let pending = PendingMessage {
                            verb,
                            ..PendingMessage::default()
                        };
                        if empty {
                            self.verbs.push(Verb::Message(pending.finish()?));
                            self.state = State::Response;
                        } else {
                            self.state = State::Message(pending);
                        }
                    }
                    b"Redirect" => {
                        if empty {
                            return Err(TwimlError::EmptyRedirect);
                        }
                        let mut method = None;
                        for (key, value) in self.attributes(e)? {
                            if key == b"method" {
                                method = Some(value);
                            }
                        }
                        self.state = State::Redirect {
                            url: String::new(),
                            method,
                        };
                    }
                    _ => return Err(TwimlError::UnknownVerb(name_for_error(name))),
                }
            }
            State::Message(mut pending) => match name {
                b"Body" => {
                    if pending.body.is_some() {
                        return Err(TwimlError::DuplicateBody);
                    }
                    pending.body = Some(String::new());
                    self.state = if empty {
                        State::Message(pending)
                    } else {
                        State::Body(pending)
                    };
                }
                b"Media" => {
                    if empty {
                        return Err(TwimlError::EmptyMedia);
                    }
                    if pending.verb.media.len() >= MAX_MEDIA {
                        return Err(TwimlError::TooManyMedia { max: MAX_MEDIA });
                    }
                    pending.media.clear();
                    self.state = State::Media(pending);
                }
                _ => {
                    return Err(TwimlError::UnexpectedElement {
                        parent: "Message",
                        child: name_for_error(name),
                    });
                }
            },
            State::Body(_) => return Err(unexpected("Body", name)),
            State::Media(_) => return Err(unexpected("Media", name)),
            State::Redirect { .. } => return Err(unexpected("Redirect", name)),
            State::Done => return Err(TwimlError::TrailingContent),
        }
        Ok(())
    }

    /// A closing tag. quick-xml has already checked that it matches the open one.
    fn end(&mut self) -> Result<(), TwimlError> {
        self.state = match std::mem::replace(&mut self.state, State::Done) {
            State::Response => State::Done,
            State::Message(pending) => {
                self.verbs.push(Verb::Message(pending.finish()?));
                State::Response
            }
            State::Body(pending) => State::Message(pending),
            State::Media(mut pending) => {
                let url = trim_xml_whitespace(&pending.media);
                if url.is_empty() {
                    return Err(TwimlError::EmptyMedia);
                }
                let url = url.to_owned();
                pending.verb.media.push(url);
                pending.media.clear();
                State::Message(pending)
            }
            State::Redirect { url, method } => {
                let url = trim_xml_whitespace(&url);
                if url.is_empty() {
                    return Err(TwimlError::EmptyRedirect);
                }
                self.verbs.push(Verb::Redirect {
                    url: url.to_owned(),
                    method,
                });
                State::Response
            }
            // Unmatched end tags are rejected by quick-xml; be defensive anyway.
            State::Prolog | State::Done => {
                return Err(self.malformed_msg("unexpected closing tag"));
            }
        };
        Ok(())
    }

    /// Character data (text, CDATA or a resolved reference) in the current state.
    fn text(&mut self, text: &str) -> Result<(), TwimlError> {
        match &mut self.state {
            State::Message(pending) => pending.text.push_str(text),
            State::Body(pending) => {
                if let Some(body) = pending.body.as_mut() {
                    body.push_str(text);
                }
            }
            State::Media(pending) => pending.media.push_str(text),
            State::Redirect { url, .. } => url.push_str(text),
            State::Prolog | State::Done if is_xml_whitespace(text) => {}
            State::Prolog => return Err(TwimlError::UnexpectedText("outside <Response>")),
            State::Done => return Err(TwimlError::TrailingContent),
            State::Response if is_xml_whitespace(text) => {}
            State::Response => return Err(TwimlError::UnexpectedText("between verbs")),
        }
        Ok(())
    }

    fn resolve_ref(&self, r: &BytesRef<'_>) -> Result<Cow<'static, str>, TwimlError> {
        match r.resolve_char_ref() {
            Ok(Some(c)) => return Ok(Cow::Owned(c.to_string())),
            Ok(None) => {}
            Err(e) => return Err(self.malformed(e)),
        }
        let name = r.decode().map_err(|_| TwimlError::InvalidUtf8)?;
        quick_xml::escape::resolve_xml_entity(&name)
            .map(Cow::Borrowed)
            .ok_or_else(|| TwimlError::UnknownEntity(name_for_error(name.as_bytes())))
    }

    /// The element's attributes, names raw and values unescaped.
    fn attributes(&self, e: &BytesStart<'_>) -> Result<Vec<(Vec<u8>, String)>, TwimlError> {
        let decoder = self.reader.decoder();
        let mut out = Vec::new();
        for attr in e.attributes() {
            let attr = attr.map_err(|err| self.malformed(err))?;
            let value = attr
                .decode_and_unescape_value(decoder)
                .map_err(|err| self.malformed(err))?;
            out.push((attr.key.as_ref().to_vec(), value.into_owned()));
        }
        Ok(out)
    }

    fn malformed(&self, err: impl std::fmt::Display) -> TwimlError {
        self.malformed_msg(&err.to_string())
    }

    fn malformed_msg(&self, message: &str) -> TwimlError {
        TwimlError::Malformed {
            position: self.reader.error_position(),
            message: message.to_owned(),
        }
    }
}

fn unexpected(parent: &'static str, child: &[u8]) -> TwimlError {
    TwimlError::UnexpectedElement {
        parent,
        child: name_for_error(child),
    }
}

/// An element name for an error message, lossily decoded and bounded in length.
fn name_for_error(name: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(name).into_owned();
    if s.len() > MAX_NAME_IN_ERROR {
        let mut cut = MAX_NAME_IN_ERROR;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn is_xml_ws_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_xml_whitespace(s: &str) -> bool {
    s.chars().all(is_xml_ws_char)
}

fn trim_xml_whitespace(s: &str) -> &str {
    s.trim_matches(is_xml_ws_char)
}

#[cfg(test)]
mod tests;
