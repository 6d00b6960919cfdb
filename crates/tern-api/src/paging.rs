//! Twilio's list envelopes: 2010-04-01 (relative URIs, one record key) and v1 (`meta`).

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::form::Params;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;

#[derive(Debug, Clone)]
pub struct PageRequest {
    pub size: u32,
    pub page: u32,
    pub token: Option<String>,
}

impl PageRequest {
    pub fn from(q: &Params) -> ApiResult<PageRequest> {
        let size = match q.get("PageSize") {
            None => DEFAULT_PAGE_SIZE,
            Some(s) => match s.parse::<u32>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
                _ => {
                    return Err(ApiError::invalid(
                        "PageSize must be an integer between 1 and 1000",
                    ));
                }
            },
        };
        let page = match q.get("Page") {
            None => 0,
            Some(s) => s
                .parse::<u32>()
                .map_err(|_| ApiError::invalid("Page must be a non-negative integer"))?,
        };
        Ok(PageRequest {
            size,
            page,
            token: q.string("PageToken").filter(|t| !t.is_empty()),
        })
    }
}

fn encode(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter())
        .finish()
}

/// A 2010-04-01 page: `path` is the list's path, `filters` the query parameters to carry.
pub fn page_2010(
    key: &str,
    items: Vec<impl serde::Serialize>,
    path: &str,
    filters: &[(String, String)],
    req: &PageRequest,
    next_token: Option<String>,
) -> Value {
    let with = |page: u32, token: Option<&str>| {
        let mut q = filters.to_vec();
        q.push(("PageSize".into(), req.size.to_string()));
        q.push(("Page".into(), page.to_string()));
        if let Some(t) = token {
            q.push(("PageToken".into(), t.to_string()));
        }
        format!("{path}?{}", encode(&q))
    };
    let start = req.page * req.size;
    let n = items.len() as u32;
    json!({
        "end": if n == 0 { start } else { start + n - 1 },
        "first_page_uri": with(0, None),
        "next_page_uri": next_token.as_deref().map(|t| with(req.page + 1, Some(t))),
        "page": req.page,
        "page_size": req.size,
        "previous_page_uri": if req.page == 0 { None } else { Some(with(req.page - 1, None)) },
        "start": start,
        "uri": with(req.page, req.token.as_deref()),
        key: items,
    })
}

/// A v1 page with absolute URLs.
pub fn page_v1(
    key: &str,
    items: Vec<Value>,
    url: &str,
    req: &PageRequest,
    next_token: Option<String>,
) -> Value {
    let with = |page: u32, token: Option<&str>| {
        let mut q = vec![
            ("PageSize".to_string(), req.size.to_string()),
            ("Page".to_string(), page.to_string()),
        ];
        if let Some(t) = token {
            q.push(("PageToken".into(), t.to_string()));
        }
        format!("{url}?{}", encode(&q))
    };
    json!({
        "meta": {
            "first_page_url": with(0, None),
            "key": key,
            "next_page_url": next_token.as_deref().map(|t| with(req.page + 1, Some(t))),
            "page": req.page,
            "page_size": req.size,
            "previous_page_url": if req.page == 0 { None } else { Some(with(req.page - 1, None)) },
            "url": with(req.page, req.token.as_deref()),
        },
        key: items,
    })
}

/// Offset paging over a list already in memory (small lists: keys, numbers, accounts).
/// The token is `PO<offset>`.
pub fn slice<T>(all: Vec<T>, req: &PageRequest) -> (Vec<T>, Option<String>) {
    let offset = req
        .token
        .as_deref()
        .and_then(|t| t.strip_prefix("PO"))
        .and_then(|o| o.parse::<usize>().ok())
        .unwrap_or((req.page as usize).saturating_mul(req.size as usize));
    let total = all.len();
    let items: Vec<T> = all
        .into_iter()
        .skip(offset)
        .take(req.size as usize)
        .collect();
    let end = offset + items.len();
    let next = (end < total).then(|| format!("PO{end}"));
    (items, next)
}
