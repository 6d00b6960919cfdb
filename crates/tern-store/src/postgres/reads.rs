//! Point reads of one message, coalesced: a route worker reads its message by sid and a
//! receipt looks its message up by carrier id, once per message each and from many tasks
//! at once. Alone, each is a round trip and a statement of its own: they were PostgreSQL's
//! most frequent statements, ~55 µs each of its time under load (`pg_stat_statements`,
//! session 13). Coalesced, PostgreSQL's CPU per delivered message fell from 466–513 to
//! 271–293 µs (`scripts/bench-pipeline-cpu`).
//!
//! A few reader tasks each take whatever lookups are waiting and answer them with one
//! statement per kind, joining the keys (unnested `WITH ORDINALITY`) to `messages`; a
//! lookup waiting alone runs the single-row statement, so an idle node adds no latency. A
//! carrier id not found among the messages (the message was resent since) is looked for
//! among the route attempts, alone: that is rare.

use deadpool_postgres::{GenericClient, Pool};
use futures_util::future::join_all;
use tern_types::Sid;
use tokio::sync::oneshot;

use super::batches::{Batches, Workers};
use super::rows::{MESSAGE_COLS, Params, message_row, qualified, query_all, query_opt};
use super::{corrupt, map_pool, probed_by_key};
use crate::{Message, Result, StoreError};

/// Reader tasks: one gathers the next batch while another's statement runs.
const READERS: usize = 2;
/// The most lookups answered by one statement.
const MAX_BATCH: usize = 256;
/// Lookups waiting for a reader; past this, callers wait to enqueue.
const QUEUE: usize = 8192;

/// What a lookup asks for.
enum Key {
    Sid(Sid),
    /// Carrier and the carrier's message id.
    CarrierId(String, String),
}

struct Lookup {
    key: Key,
    answer: oneshot::Sender<Result<Option<Message>>>,
}

/// The queue in front of the reader tasks. The tasks end when it is dropped.
pub(super) struct Reads {
    readers: Batches<Lookup>,
}

impl Reads {
    /// Starts the reader tasks on the current Tokio runtime.
    pub(super) fn start(pool: Pool) -> Reads {
        let workers = Workers {
            tasks: READERS,
            max_batch: MAX_BATCH,
            queue: QUEUE,
            metric: "tern_store_read_batch_size",
            name: "readers",
        };
        let readers = Batches::start(workers, move |lookups| {
            let pool = pool.clone();
            async move { answer(&pool, lookups).await }
        });
        Reads { readers }
    }

    /// The most lookups one batch has held so far.
    pub(super) fn largest_batch(&self) -> usize {
        self.readers.largest_batch()
    }

    pub(super) async fn message(&self, sid: Sid) -> Result<Option<Message>> {
        self.ask(Key::Sid(sid)).await
    }

    /// The message a carrier's id names: the newest with that id, else the one an
    /// accepted attempt with that id was resent from.
    pub(super) async fn by_carrier_id(&self, carrier: &str, id: &str) -> Result<Option<Message>> {
        self.ask(Key::CarrierId(carrier.to_owned(), id.to_owned()))
            .await
    }

    async fn ask(&self, key: Key) -> Result<Option<Message>> {
        let (answer, rx) = oneshot::channel();
        self.readers.ask(Lookup { key, answer }, rx).await
    }
}

async fn answer(pool: &Pool, lookups: Vec<Lookup>) {
    let client = match pool.get().await {
        Ok(c) => c,
        Err(e) => {
            let e = map_pool(e);
            for l in lookups {
                let _ = l.answer.send(Err(e.clone()));
            }
            return;
        }
    };
    let (mut by_sid, mut by_carrier) = (Vec::new(), Vec::new());
    for l in lookups {
        match l.key {
            Key::Sid(sid) => by_sid.push((sid, l.answer)),
            Key::CarrierId(carrier, id) => by_carrier.push(((carrier, id), l.answer)),
        }
    }
    // Both statements pipelined on the one connection.
    tokio::join!(
        reply(&client, by_sid, by_sids),
        reply(&client, by_carrier, by_carrier_ids)
    );
}

/// Answers each lookup of `waiting` from `read` (the messages found, by index of the key).
async fn reply<'c, C, K, F>(
    c: &'c C,
    waiting: Vec<(K, oneshot::Sender<Result<Option<Message>>>)>,
    read: impl FnOnce(&'c C, Vec<K>) -> F,
) where
    C: GenericClient,
    F: Future<Output = Result<Vec<Option<Message>>>>,
{
    if waiting.is_empty() {
        return;
    }
    let (keys, answers): (Vec<K>, Vec<_>) = waiting.into_iter().unzip();
    match read(c, keys).await {
        Ok(found) => {
            for (answer, m) in answers.into_iter().zip(found) {
                let _ = answer.send(Ok(m));
            }
        }
        Err(e) => {
            for answer in answers {
                let _ = answer.send(Err(e.clone()));
            }
        }
    }
}

/// The messages with these sids, in their order (`None` where there is none).
async fn by_sids<C: GenericClient>(c: &C, sids: Vec<Sid>) -> Result<Vec<Option<Message>>> {
    if let [sid] = sids[..] {
        let m = query_opt(
            c,
            &format!("SELECT {MESSAGE_COLS} FROM messages WHERE sid = $1"),
            &[&sid.as_str()],
            message_row,
        )
        .await?;
        return Ok(vec![m]);
    }
    let keys: Vec<&str> = sids.iter().map(Sid::as_str).collect();
    let sql = format!(
        "SELECT {}, k.ord FROM UNNEST($1::text[]) WITH ORDINALITY AS k (sid, ord)
         JOIN messages m ON m.sid = k.sid
         WHERE {}",
        qualified(MESSAGE_COLS, "m"),
        probed_by_key("k.ord", "$1::text[]")
    );
    by_position(c, &sql, &[&keys], sids.len()).await
}

/// The messages these carrier ids name (see [`Reads::by_carrier_id`]), in their order.
async fn by_carrier_ids<C: GenericClient>(
    c: &C,
    keys: Vec<(String, String)>,
) -> Result<Vec<Option<Message>>> {
    let mut found = if let [(carrier, id)] = &keys[..] {
        let m = query_opt(
            c,
            &format!(
                "SELECT {MESSAGE_COLS} FROM messages
                 WHERE carrier = $1 AND carrier_message_id = $2
                 ORDER BY created DESC, sid DESC LIMIT 1"
            ),
            &[carrier, id],
            message_row,
        )
        .await?;
        vec![m]
    } else {
        let carriers: Vec<&str> = keys.iter().map(|(c, _)| c.as_str()).collect();
        let ids: Vec<&str> = keys.iter().map(|(_, i)| i.as_str()).collect();
        let sql = format!(
            "SELECT DISTINCT ON (k.ord) {}, k.ord
             FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS k (carrier, id, ord)
             JOIN messages m ON m.carrier = k.carrier AND m.carrier_message_id = k.id
             WHERE {} AND m.carrier_message_id IS NOT NULL
             ORDER BY k.ord, m.created DESC, m.sid DESC",
            qualified(MESSAGE_COLS, "m"),
            probed_by_key("k.ord", "$1::text[]")
        );
        by_position(c, &sql, &[&carriers, &ids], keys.len()).await?
    };
    // Not among the messages: resent since, found by the attempt it was resent from.
    let resent = keys
        .iter()
        .zip(found.iter_mut())
        .filter(|(_, m)| m.is_none())
        .map(|((carrier, id), m)| async move {
            *m = query_opt(
                c,
                &format!(
                    "SELECT {MESSAGE_COLS} FROM messages WHERE sid = (
                         SELECT message_sid FROM route_attempts
                         WHERE carrier = $1 AND carrier_message_id = $2 AND result = 'accepted'
                         ORDER BY id DESC LIMIT 1)"
                ),
                &[carrier, id],
                message_row,
            )
            .await?;
            Ok::<(), StoreError>(())
        });
    join_all(resent).await.into_iter().collect::<Result<()>>()?;
    Ok(found)
}

/// The messages `sql` returns for `n` keys, each row the message's columns and then its
/// key's position (from 1), laid out by position: `None` for keys without a row.
async fn by_position<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
    n: usize,
) -> Result<Vec<Option<Message>>> {
    let position = MESSAGE_COLS.split(", ").count();
    let rows = query_all(c, sql, params, |r| {
        let ord: i64 = r.try_get(position).map_err(corrupt)?;
        Ok((ord, message_row(r)?))
    })
    .await?;
    let mut out: Vec<Option<Message>> = vec![None; n];
    for (ord, m) in rows {
        let slot = usize::try_from(ord)
            .ok()
            .and_then(|o| o.checked_sub(1))
            .and_then(|i| out.get_mut(i))
            .ok_or_else(|| StoreError::Corrupt(format!("key position {ord} of {n}")))?;
        *slot = Some(m);
    }
    Ok(out)
}
