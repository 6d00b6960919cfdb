//! Property tests of delivery-receipt parsing and message-id matching.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use tern_smpp::receipt::{DeliveryReceipt, NormalizedMessageId, ReceiptStat, message_ids_match};

fn stat() -> impl Strategy<Value = ReceiptStat> {
    prop_oneof![
        Just(ReceiptStat::Delivered),
        Just(ReceiptStat::Expired),
        Just(ReceiptStat::Deleted),
        Just(ReceiptStat::Undeliverable),
        Just(ReceiptStat::Accepted),
        Just(ReceiptStat::Unknown),
        Just(ReceiptStat::Rejected),
        Just(ReceiptStat::Enroute),
    ]
}

proptest! {
    #[test]
    fn parse_never_panics(s in any::<String>()) {
        let _ = DeliveryReceipt::parse(&s);
    }

    #[test]
    fn built_receipts_parse_back(
        id in "[0-9A-Za-z-]{1,20}",
        stat in stat(),
        submit in "[0-9]{10}",
        done in "[0-9]{10,12}",
        err in "[0-9]{3}",
        text in "[ -~]{0,20}",
    ) {
        let mut r = DeliveryReceipt::new(id, stat, submit, done);
        r.err = Some(err);
        r.text = Some(text.trim().to_owned());
        prop_assert_eq!(DeliveryReceipt::parse(&r.to_text()), Some(r.clone()));
        // Case and extra spacing do not matter.
        let loud = r.to_text().replace("submit date:", "SUBMIT   DATE : ").replace(" stat:", "   Stat:");
        prop_assert_eq!(DeliveryReceipt::parse(&loud), Some(r));
    }

    #[test]
    fn decimal_and_hex_spellings_of_one_number_match(n in any::<u64>(), zeros in 0usize..4) {
        let dec = n.to_string();
        let hex_upper = format!("0x{n:X}");
        let hex_lower = format!("{}{n:x}", "0".repeat(zeros));
        prop_assert!(message_ids_match(&dec, &hex_upper));
        prop_assert!(message_ids_match(&hex_upper, &hex_lower));
        prop_assert!(message_ids_match(&dec, &hex_lower));
        let padded = format!(" {dec} ");
        prop_assert!(message_ids_match(&dec, &padded));
    }

    #[test]
    fn distinct_numbers_in_one_base_do_not_match(a in any::<u64>(), b in any::<u64>()) {
        prop_assume!(a != b);
        let (x, y) = (format!("0x{a:x}"), format!("0x{b:x}"));
        prop_assert!(!message_ids_match(&x, &y));
    }

    #[test]
    fn normalisation_never_panics(s in any::<String>()) {
        let n = NormalizedMessageId::new(&s);
        prop_assert!(n.matches(&n));
    }
}
