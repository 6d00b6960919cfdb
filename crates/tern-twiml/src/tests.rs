use super::*;
use proptest::prelude::*;

fn parse(xml: &str) -> Result<MessagingResponse, TwimlError> {
    parse_messaging(xml.as_bytes())
}

fn message(body: &str) -> Verb {
    Verb::Message(MessageVerb {
        body: body.to_owned(),
        ..MessageVerb::default()
    })
}

fn verbs(xml: &str) -> Vec<Verb> {
    match parse(xml) {
        Ok(r) => r.verbs,
        Err(e) => panic!("{xml:?} failed to parse: {e}"),
    }
}

#[test]
fn empty_responses() {
    assert!(verbs("<Response/>").is_empty());
    assert!(verbs("<Response></Response>").is_empty());
    assert!(verbs("<Response>\n  \t\r\n</Response>").is_empty());
    assert!(verbs(r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#).is_empty());
    assert!(verbs("<?xml version=\"1.0\"?>\n<Response>\n</Response>\n").is_empty());
    assert!(verbs("\u{feff}<Response/>").is_empty());
    assert!(verbs("<!-- hi --><Response><!-- nothing --></Response><!-- bye -->").is_empty());
}

#[test]
fn plain_message_is_trimmed() {
    assert_eq!(
        verbs("<Response><Message>Hello</Message></Response>"),
        vec![message("Hello")]
    );
    assert_eq!(
        verbs("<Response>\n  <Message>\n    Hello  world \n  </Message>\n</Response>"),
        vec![message("Hello  world")]
    );
    assert_eq!(verbs("<Response><Message/></Response>"), vec![message("")]);
    assert_eq!(
        verbs("<Response><Message></Message></Response>"),
        vec![message("")]
    );
}

#[test]
fn nested_body_and_media() {
    let v = verbs(
        "<Response>\n <Message>\n  <Body>  keep  me \n</Body>\n  \
         <Media> https://example.com/a.jpg </Media>\n  \
         <Media>https://example.com/b.png</Media>\n </Message>\n</Response>",
    );
    assert_eq!(
        v,
        vec![Verb::Message(MessageVerb {
            body: "  keep  me \n".to_owned(),
            media: vec![
                "https://example.com/a.jpg".to_owned(),
                "https://example.com/b.png".to_owned()
            ],
            ..MessageVerb::default()
        })]
    );
    assert_eq!(
        verbs("<Response><Message><Body/></Message></Response>"),
        vec![message("")]
    );
    // Media only, no body.
    assert_eq!(
        verbs("<Response><Message><Media>https://e.com/x</Media></Message></Response>"),
        vec![Verb::Message(MessageVerb {
            media: vec!["https://e.com/x".to_owned()],
            ..MessageVerb::default()
        })]
    );
    // Plain text next to Media is the (trimmed) body.
    assert_eq!(
        verbs("<Response><Message> hi <Media>https://e.com/x</Media></Message></Response>"),
        vec![Verb::Message(MessageVerb {
            body: "hi".to_owned(),
            media: vec!["https://e.com/x".to_owned()],
            ..MessageVerb::default()
        })]
    );
}

#[test]
fn message_attributes() {
    let v = verbs(
        r#"<Response><Message to="+15005550006" from="+15005550001"
             action="https://e.com/a?x=1&amp;y=2" method="GET"
             statusCallback="https://e.com/s" unknown="ignored">Hi</Message></Response>"#,
    );
    assert_eq!(
        v,
        vec![Verb::Message(MessageVerb {
            body: "Hi".to_owned(),
            to: Some("+15005550006".to_owned()),
            from: Some("+15005550001".to_owned()),
            action: Some("https://e.com/a?x=1&y=2".to_owned()),
            method: Some("GET".to_owned()),
            status_callback: Some("https://e.com/s".to_owned()),
            media: vec![],
        })]
    );
    let v = verbs(r#"<Response><Message to='+15005550006'/></Response>"#);
    assert_eq!(
        v,
        vec![Verb::Message(MessageVerb {
            to: Some("+15005550006".to_owned()),
            ..MessageVerb::default()
        })]
    );
}

#[test]
fn redirect() {
    assert_eq!(
        verbs(r#"<Response><Redirect method="POST">https://e.com/next</Redirect></Response>"#),
        vec![Verb::Redirect {
            url: "https://e.com/next".to_owned(),
            method: Some("POST".to_owned()),
        }]
    );
    assert_eq!(
        verbs("<Response><Redirect>\n  https://e.com/n?a=1&amp;b=2\n</Redirect></Response>"),
        vec![Verb::Redirect {
            url: "https://e.com/n?a=1&b=2".to_owned(),
            method: None,
        }]
    );
    assert_eq!(
        parse("<Response><Redirect/></Response>"),
        Err(TwimlError::EmptyRedirect)
    );
    assert_eq!(
        parse("<Response><Redirect>  </Redirect></Response>"),
        Err(TwimlError::EmptyRedirect)
    );
}

#[test]
fn several_verbs_in_order() {
    let v = verbs(
        "<Response><Message>one</Message><Message>two</Message>\
         <Redirect>https://e.com/r</Redirect></Response>",
    );
    assert_eq!(
        v,
        vec![
            message("one"),
            message("two"),
            Verb::Redirect {
                url: "https://e.com/r".to_owned(),
                method: None
            }
        ]
    );
}

#[test]
fn entities_and_cdata() {
    assert_eq!(
        verbs(
            "<Response><Message>a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos;</Message></Response>"
        ),
        vec![message("a & b <c> \"d\" 'e'")]
    );
    assert_eq!(
        verbs("<Response><Message>caf&#233; &#x1F600;</Message></Response>"),
        vec![message("café 😀")]
    );
    assert_eq!(
        verbs("<Response><Message><![CDATA[ <b>&amp;</b> ]]></Message></Response>"),
        vec![message("<b>&amp;</b>")]
    );
    assert_eq!(
        verbs("<Response><Message><Body><![CDATA[ x < y ]]></Body></Message></Response>"),
        vec![message(" x < y ")]
    );
    assert_eq!(
        verbs("<Response><Message>a<!-- c -->b</Message></Response>"),
        vec![message("ab")]
    );
    assert_eq!(
        verbs("<Response><Message>line1\r\nline2</Message></Response>"),
        vec![message("line1\nline2")]
    );
}

#[test]
fn structural_errors() {
    assert_eq!(parse(""), Err(TwimlError::MissingRoot));
    assert_eq!(parse("  \n"), Err(TwimlError::MissingRoot));
    assert_eq!(
        parse(r#"<?xml version="1.0"?>"#),
        Err(TwimlError::MissingRoot)
    );
    assert_eq!(
        parse("<Foo/>"),
        Err(TwimlError::WrongRoot("Foo".to_owned()))
    );
    assert_eq!(
        parse("<response/>"),
        Err(TwimlError::WrongRoot("response".to_owned()))
    );
    assert_eq!(
        parse("<Response><Say>hi</Say></Response>"),
        Err(TwimlError::UnknownVerb("Say".to_owned()))
    );
    assert_eq!(
        parse("<Response><message>hi</message></Response>"),
        Err(TwimlError::UnknownVerb("message".to_owned()))
    );
    assert_eq!(
        parse("<Response><Message><Foo/></Message></Response>"),
        Err(TwimlError::UnexpectedElement {
            parent: "Message",
            child: "Foo".to_owned()
        })
    );
    assert_eq!(
        parse("<Response><Message><Body><b>x</b></Body></Message></Response>"),
        Err(TwimlError::UnexpectedElement {
            parent: "Body",
            child: "b".to_owned()
        })
    );
    assert_eq!(
        parse("<Response><Message><Body>a</Body><Body>b</Body></Message></Response>"),
        Err(TwimlError::DuplicateBody)
    );
    assert_eq!(
        parse("<Response><Message>a<Body>b</Body></Message></Response>"),
        Err(TwimlError::MixedBody)
    );
    assert_eq!(
        parse("<Response><Message><Media/></Message></Response>"),
        Err(TwimlError::EmptyMedia)
    );
    assert_eq!(
        parse("<Response><Message><Media> </Media></Message></Response>"),
        Err(TwimlError::EmptyMedia)
    );
    assert_eq!(
        parse("<Response>text</Response>"),
        Err(TwimlError::UnexpectedText("between verbs"))
    );
    assert_eq!(
        parse("junk<Response/>"),
        Err(TwimlError::UnexpectedText("outside <Response>"))
    );
    assert_eq!(
        parse("<Response/><Response/>"),
        Err(TwimlError::TrailingContent)
    );
    assert_eq!(parse("<Response/>junk"), Err(TwimlError::TrailingContent));
    assert_eq!(
        parse("<Response><Message>hi"),
        Err(TwimlError::UnexpectedEof("Message"))
    );
    assert_eq!(
        parse("<Response>"),
        Err(TwimlError::UnexpectedEof("Response"))
    );
    assert_eq!(
        parse("<Response><Message>&nbsp;</Message></Response>"),
        Err(TwimlError::UnknownEntity("nbsp".to_owned()))
    );
    assert_eq!(
        parse(r#"<!DOCTYPE r [<!ENTITY x "y">]><Response/>"#),
        Err(TwimlError::DoctypeNotAllowed)
    );
    assert_eq!(
        parse_messaging(b"<Response>\xff</Response>"),
        Err(TwimlError::InvalidUtf8)
    );
    for bad in [
        "<Response><Message>hi</Redirect></Response>",
        "<Response></Message></Response>",
        "<Response><Message>a & b</Message></Response>",
        "<Response><Message to=\"a\" to=\"b\">x</Message></Response>",
        "<Response><Message to=a>x</Message></Response>",
        "<Response><Message>&#0;</Message></Response>",
        "<Response><Message>&#xZZ;</Message></Response>",
        "<Response><Message>x</Message><?xml version=\"1.0\"?></Response>",
        "<Response",
    ] {
        assert!(
            matches!(parse(bad), Err(TwimlError::Malformed { .. })),
            "{bad:?} gave {:?}",
            parse(bad)
        );
    }
}

#[test]
fn verb_limit() {
    let ok = format!(
        "<Response>{}</Response>",
        "<Message>x</Message>".repeat(MAX_VERBS)
    );
    assert_eq!(verbs(&ok).len(), MAX_VERBS);
    let too_many = format!(
        "<Response>{}<Redirect>https://e.com</Redirect></Response>",
        "<Message>x</Message>".repeat(MAX_VERBS)
    );
    assert_eq!(
        parse(&too_many),
        Err(TwimlError::TooManyVerbs { max: MAX_VERBS })
    );
}

#[test]
fn media_limit() {
    let media = |n: usize| {
        format!(
            "<Response><Message>{}</Message></Response>",
            "<Media>https://e.com/m</Media>".repeat(n)
        )
    };
    assert!(
        matches!(&verbs(&media(MAX_MEDIA))[..], [Verb::Message(m)] if m.media.len() == MAX_MEDIA)
    );
    assert_eq!(
        parse(&media(MAX_MEDIA + 1)),
        Err(TwimlError::TooManyMedia { max: MAX_MEDIA })
    );
}

#[test]
fn size_limit() {
    let prefix = "<Response><Message>";
    let suffix = "</Message></Response>";
    let fill = MAX_INPUT_BYTES - prefix.len() - suffix.len();
    let at_limit = format!("{prefix}{}{suffix}", "a".repeat(fill));
    assert_eq!(at_limit.len(), MAX_INPUT_BYTES);
    assert_eq!(verbs(&at_limit), vec![message(&"a".repeat(fill))]);
    let over = format!("{prefix}{}{suffix}", "a".repeat(fill + 1));
    assert_eq!(
        parse(&over),
        Err(TwimlError::TooLarge {
            len: MAX_INPUT_BYTES + 1,
            max: MAX_INPUT_BYTES
        })
    );
}

#[test]
fn long_names_are_truncated_in_errors() {
    let name = "V".repeat(1000);
    let Err(TwimlError::UnknownVerb(shown)) = parse(&format!("<Response><{name}/></Response>"))
    else {
        panic!("expected UnknownVerb");
    };
    assert!(shown.len() <= MAX_NAME_IN_ERROR + '…'.len_utf8());
}

/// Escapes text for element content the way a TwiML library would.
fn escape_body(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// Message text: anything but `\r` (XML normalises line ends) and control characters
/// XML cannot carry, with a bias towards markup characters.
fn body_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            3 => proptest::sample::select(vec!['<', '>', '&', '"', '\'', ';', '#', ' ', '\n', '\t', ']']),
            3 => proptest::char::range('a', 'z'),
            1 => any::<char>().prop_filter("XML Char", |c| {
                !c.is_control() && *c != '\u{FEFF}' && !('\u{FFFE}'..='\u{FFFF}').contains(c)
            }),
        ],
        0..200,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #[test]
    fn never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_messaging(&bytes);
    }

    #[test]
    fn never_panics_inside_response(s in any::<String>()) {
        let _ = parse(&format!("<Response>{s}</Response>"));
        let _ = parse(&format!("<Response><Message>{s}</Message></Response>"));
    }

    #[test]
    fn never_panics_on_markup_soup(
        parts in proptest::collection::vec(
            proptest::sample::select(vec![
                "<Response>", "</Response>", "<Response/>", "<Message>", "</Message>",
                "<Message/>", "<Body>", "</Body>", "<Media>", "</Media>", "<Redirect>",
                "</Redirect>", "x", " ", "&amp;", "&#1;", "&bogus;", "<![CDATA[", "]]>",
                "<!--", "-->", "<?xml version=\"1.0\"?>", "<!DOCTYPE x>", "<", ">", "&", "\"",
                " to=\"+1\"", "/>",
            ]),
            0..40,
        )
    ) {
        let _ = parse(&parts.concat());
    }

    #[test]
    fn plain_body_round_trips(body in body_strategy()) {
        let xml = format!("<Response><Message>{}</Message></Response>", escape_body(&body));
        let parsed = parse(&xml);
        prop_assert_eq!(parsed, Ok(MessagingResponse {
            verbs: vec![message(trim_xml_whitespace(&body))],
        }));
    }

    #[test]
    fn nested_body_round_trips(body in body_strategy()) {
        let xml = format!(
            "<Response><Message to=\"{}\"><Body>{}</Body></Message></Response>",
            quick_xml::escape::escape(body.replace(['\n', '\t'], " ")),
            escape_body(&body)
        );
        let expected = MessageVerb {
            body: body.clone(),
            to: Some(body.replace(['\n', '\t'], " ")),
            ..MessageVerb::default()
        };
        prop_assert_eq!(parse(&xml), Ok(MessagingResponse { verbs: vec![Verb::Message(expected)] }));
    }
}
