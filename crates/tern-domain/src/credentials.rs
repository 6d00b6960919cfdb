//! SMPP credentials: the rules for a `system_id` and a password, generating them, and
//! hashing the password for storage.
//!
//! SMPP 3.4 (§4.1.1, `bind_*`) carries `system_id` as a C-Octet String of at most 16
//! octets and `password` of at most 9, both counting the terminating NUL: 15 and 8
//! characters. Tern accepts printable ASCII only, so that what an operator types, what the
//! API echoes and what an ESME sends are the same bytes; a `system_id` may not contain a
//! space either, because many ESME configurations cannot quote one.
//!
//! # Why argon2id and not SHA-256
//!
//! API key secrets are 32 random characters (about 190 bits) and are stored as SHA-256: no
//! one can enumerate that space, however fast the hash. An SMPP password is at most 8
//! characters, so its space is small — 62^8 ≈ 2^48 for a generated one, far less for a
//! chosen one — and a GPU computes billions of SHA-256 hashes a second: a leaked table of
//! SHA-256 password hashes would be read back in hours. argon2id makes every guess cost
//! memory and time (12 MiB and 13–25 ms here), which moves an exhaustive search of even
//! a generated password to thousands of GPU-years. The cost is paid once per bind, which
//! is rare (an ESME binds and stays bound), so it is affordable on the server; callers on
//! an async runtime run it with `spawn_blocking`.
//!
//! Hashing and generation draw randomness from the operating system; nothing else here
//! does IO.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;

/// The longest `system_id` a bind carries: 16 octets with the terminating NUL.
pub const MAX_SYSTEM_ID_LEN: usize = 15;
/// The longest password a bind carries: 9 octets with the terminating NUL.
pub const MAX_PASSWORD_LEN: usize = 8;
/// Length of a generated password.
pub const GENERATED_PASSWORD_LEN: usize = 8;
/// Prefix of a generated `system_id`, followed by 8 random lowercase letters and digits.
pub const GENERATED_SYSTEM_ID_PREFIX: &str = "tern";

/// argon2id memory cost in KiB (12 MiB), time cost 3, one lane: one of OWASP's equivalent
/// argon2id configurations (Password Storage Cheat Sheet: 12 MiB × 3 ≈ 19 MiB × 2), chosen
/// over the 19 MiB one for the smaller footprint of a burst of concurrent binds.
///
/// Measured on this project's machine (2 cores, release build, argon2 0.6): one verify
/// takes 13.5 ms on an idle machine and 18–25 ms while builds share its cores — inside
/// the 10–30 ms budget either way (19 MiB × 2: 18 ms idle, up to 31 ms loaded; 19 MiB × 1:
/// 7.5 ms). `verify_cost_is_in_budget` measures it again
/// (`cargo test --release -p tern-domain -- --ignored --nocapture`).
/// Hashes keep their parameters in the PHC string, so raising these later still verifies
/// every stored hash.
pub const ARGON2_M_COST_KIB: u32 = 12 * 1024;
pub const ARGON2_T_COST: u32 = 3;
pub const ARGON2_P_COST: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("system_id is empty; it must be 1 to {MAX_SYSTEM_ID_LEN} characters")]
    SystemIdEmpty,
    #[error(
        "system_id is {0} characters long; SMPP 3.4 allows at most {MAX_SYSTEM_ID_LEN} (16 octets with the terminating NUL)"
    )]
    SystemIdTooLong(usize),
    #[error(
        "system_id has {found:?} at position {position}; only printable ASCII without spaces is allowed ('!' to '~')"
    )]
    SystemIdCharacter { position: usize, found: char },
    #[error("password is empty; it must be 1 to {MAX_PASSWORD_LEN} characters")]
    PasswordEmpty,
    #[error(
        "password is {0} characters long; SMPP 3.4 allows at most {MAX_PASSWORD_LEN} (9 octets with the terminating NUL)"
    )]
    PasswordTooLong(usize),
    /// The offending character is not repeated: it is part of a secret.
    #[error(
        "password has a character that is not printable ASCII at position {0}; only ' ' to '~' is allowed"
    )]
    PasswordCharacter(usize),
}

/// Checks a `system_id`: 1 to 15 characters from `!` (0x21) to `~` (0x7E).
pub fn validate_system_id(s: &str) -> Result<(), CredentialError> {
    let len = s.chars().count();
    if len == 0 {
        return Err(CredentialError::SystemIdEmpty);
    }
    if let Some((position, found)) = s.chars().enumerate().find(|(_, c)| !c.is_ascii_graphic()) {
        return Err(CredentialError::SystemIdCharacter { position, found });
    }
    if len > MAX_SYSTEM_ID_LEN {
        return Err(CredentialError::SystemIdTooLong(len));
    }
    Ok(())
}

/// Checks a password: 1 to 8 characters from ` ` (0x20) to `~` (0x7E).
pub fn validate_password(s: &str) -> Result<(), CredentialError> {
    let len = s.chars().count();
    if len == 0 {
        return Err(CredentialError::PasswordEmpty);
    }
    if let Some(position) = s.chars().position(|c| !(c == ' ' || c.is_ascii_graphic())) {
        return Err(CredentialError::PasswordCharacter(position));
    }
    if len > MAX_PASSWORD_LEN {
        return Err(CredentialError::PasswordTooLong(len));
    }
    Ok(())
}

/// 8 random characters from `A-Z`, `a-z` and `0-9` (about 47.6 bits).
pub fn generate_password() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(GENERATED_PASSWORD_LEN)
        .map(char::from)
        .collect()
}

/// `tern` and 8 random lowercase letters and digits: 12 characters, about 41 bits, so two
/// generated ones practically never collide (the store still refuses a duplicate).
pub fn generate_system_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut s = String::with_capacity(GENERATED_SYSTEM_ID_PREFIX.len() + 8);
    s.push_str(GENERATED_SYSTEM_ID_PREFIX);
    for _ in 0..8 {
        s.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    s
}

fn hasher() -> Argon2<'static> {
    // The constants are within argon2's bounds (checked by a test); the fallback is never
    // taken, and would still be argon2id with the library's defaults.
    let params =
        Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The argon2id PHC string of `password` with a fresh 16-byte salt from the operating
/// system: `$argon2id$v=19$m=12288,t=3,p=1$<salt>$<hash>`. Takes 13–25 ms of CPU: call it
/// from `spawn_blocking` on an async runtime.
///
/// # Panics
///
/// If the operating system's random source fails (nothing sensible can be stored then).
pub fn hash_password(password: &str) -> String {
    match hasher().hash_password(password.as_bytes()) {
        Ok(hash) => hash.to_string(),
        // Only the RNG can fail here: the parameters are fixed and valid, and argon2 takes
        // passwords up to 4 GiB.
        Err(e) => panic!("cannot hash a password: {e}"),
    }
}

/// Whether `password` matches the PHC string `phc`, with the parameters the string names.
/// `false` for a malformed or non-argon2 string. The final comparison is constant-time
/// (argon2's `Output` compares in constant time), and the cost of the computation before
/// it does not depend on the password. Takes as long as [`hash_password`].
pub fn verify_password(password: &str, phc: &str) -> bool {
    hasher().verify_password(password.as_bytes(), phc).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parameters_are_valid_and_appear_in_the_hash() {
        assert!(Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None).is_ok());
        let h = hash_password("secret");
        assert!(
            h.starts_with(&format!(
                "$argon2id$v=19$m={ARGON2_M_COST_KIB},t={ARGON2_T_COST},p={ARGON2_P_COST}$"
            )),
            "{h}"
        );
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash_password("pa ss~1");
        assert!(verify_password("pa ss~1", &h));
        assert!(!verify_password("pa ss~2", &h));
        assert!(!verify_password("", &h));
        assert!(!verify_password("pa ss~1 ", &h));
    }

    #[test]
    fn salts_are_fresh() {
        let (a, b) = (hash_password("same"), hash_password("same"));
        assert_ne!(a, b);
        assert!(verify_password("same", &a) && verify_password("same", &b));
    }

    #[test]
    fn malformed_hashes_verify_nothing() {
        for bad in [
            "",
            "secret",
            "$argon2id$",
            "$argon2id$v=19$m=12288,t=3,p=1$",
            "$argon2id$v=19$m=12288,t=3,p=1$c2FsdHNhbHQ",
            "$argon2id$v=19$m=12288,t=3,p=1$!!!$!!!",
            "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            assert!(!verify_password("secret", bad), "{bad:?}");
        }
        // A hash of another password with valid syntax: well-formed, still no match.
        let other = hash_password("other");
        assert!(!verify_password("secret", &other));
    }

    #[test]
    fn hashes_made_with_other_parameters_still_verify() {
        // The PHC string carries its parameters: raising ours later keeps old hashes valid.
        let old = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8, 1, 1, None).unwrap(),
        )
        .hash_password(b"legacy")
        .unwrap()
        .to_string();
        assert!(verify_password("legacy", &old));
        assert!(!verify_password("Legacy", &old));
    }

    #[test]
    fn system_id_rules() {
        assert_eq!(validate_system_id("a"), Ok(()));
        assert_eq!(validate_system_id("tern_ESME-01.x!"), Ok(()));
        assert_eq!(validate_system_id(&"x".repeat(15)), Ok(()));
        assert_eq!(validate_system_id(""), Err(CredentialError::SystemIdEmpty));
        assert_eq!(
            validate_system_id(&"x".repeat(16)),
            Err(CredentialError::SystemIdTooLong(16))
        );
        assert_eq!(
            validate_system_id("my esme"),
            Err(CredentialError::SystemIdCharacter {
                position: 2,
                found: ' '
            })
        );
        assert_eq!(
            validate_system_id("abc\0"),
            Err(CredentialError::SystemIdCharacter {
                position: 3,
                found: '\0'
            })
        );
        assert_eq!(
            validate_system_id("é"),
            Err(CredentialError::SystemIdCharacter {
                position: 0,
                found: 'é'
            })
        );
        assert_eq!(
            validate_system_id("tab\there"),
            Err(CredentialError::SystemIdCharacter {
                position: 3,
                found: '\t'
            })
        );
        let msg = validate_system_id(&"x".repeat(20)).unwrap_err().to_string();
        assert!(msg.contains("20") && msg.contains("15"), "{msg}");
    }

    #[test]
    fn password_rules() {
        assert_eq!(validate_password("a"), Ok(()));
        assert_eq!(validate_password("p w~!{}"), Ok(()));
        assert_eq!(validate_password(&"x".repeat(8)), Ok(()));
        assert_eq!(validate_password(""), Err(CredentialError::PasswordEmpty));
        assert_eq!(
            validate_password(&"x".repeat(9)),
            Err(CredentialError::PasswordTooLong(9))
        );
        assert_eq!(
            validate_password("ab\ncd"),
            Err(CredentialError::PasswordCharacter(2))
        );
        assert_eq!(
            validate_password("pässwd"),
            Err(CredentialError::PasswordCharacter(1))
        );
        // The message does not repeat the secret's character.
        let msg = validate_password("ab\u{e9}").unwrap_err().to_string();
        assert!(!msg.contains('\u{e9}'), "{msg}");
    }

    #[test]
    fn generated_values_follow_the_rules() {
        for _ in 0..200 {
            let p = generate_password();
            assert_eq!(p.len(), GENERATED_PASSWORD_LEN);
            assert!(p.bytes().all(|b| b.is_ascii_alphanumeric()), "{p}");
            assert_eq!(validate_password(&p), Ok(()));
            let s = generate_system_id();
            assert_eq!(s.len(), 12);
            assert!(s.starts_with("tern"));
            assert!(
                s[4..]
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                "{s}"
            );
            assert_eq!(validate_system_id(&s), Ok(()));
        }
        assert_ne!(generate_password(), generate_password());
        assert_ne!(generate_system_id(), generate_system_id());
    }

    /// Prints the cost of one verify; run in release to compare with the budget (10–30 ms).
    #[test]
    #[ignore = "a measurement: cargo test --release -p tern-domain -- --ignored --nocapture"]
    fn verify_cost_is_in_budget() {
        let h = hash_password("abcdefgh");
        let n = 20;
        let start = std::time::Instant::now();
        for _ in 0..n {
            assert!(verify_password("abcdefgh", &h));
        }
        let per = start.elapsed() / n;
        println!(
            "argon2id m={ARGON2_M_COST_KIB} KiB t={ARGON2_T_COST} p={ARGON2_P_COST}: {per:?} per verify"
        );
        assert!(per < std::time::Duration::from_millis(100), "{per:?}");
    }

    proptest! {
        #[test]
        fn validation_never_panics_and_agrees_with_the_byte_rules(s in ".{0,20}") {
            let graphic = s.chars().all(|c| c.is_ascii_graphic());
            let n = s.chars().count();
            prop_assert_eq!(validate_system_id(&s).is_ok(), graphic && (1..=15).contains(&n));
            let printable = s.chars().all(|c| c == ' ' || c.is_ascii_graphic());
            prop_assert_eq!(validate_password(&s).is_ok(), printable && (1..=8).contains(&n));
        }
    }
}
