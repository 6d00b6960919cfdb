//! What the engine's integration tests share: an account with one number.

use tern_node::now_ms;
use tern_store::{Account, AccountStatus, NumberConfig, PhoneNumber, Store};
use tern_types::{Sid, SidPrefix};

/// Creates an active account (auth token `secret-token`) owning `+14155550100`, whose
/// inbound messages go to `sms_url`.
pub async fn seed_account(store: &dyn Store, sms_url: Option<String>) -> (Account, PhoneNumber) {
    let t = now_ms();
    let account = Account {
        sid: Sid::generate(SidPrefix::Account),
        parent_sid: None,
        friendly_name: "t".into(),
        auth_token: "secret-token".into(),
        status: AccountStatus::Active,
        created: t,
        updated: t,
    };
    store
        .create_account(account.clone())
        .await
        .expect("account");
    let number = PhoneNumber {
        sid: Sid::generate(SidPrefix::PhoneNumber),
        account_sid: account.sid,
        phone_number: "+14155550100".into(),
        config: NumberConfig {
            sms_url,
            ..Default::default()
        },
        created: t,
        updated: t,
    };
    store.create_number(number.clone()).await.expect("number");
    (account, number)
}
