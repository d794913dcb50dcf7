//! Who is asking: the bearer token of every request but `/healthz` and
//! `/openapi.json`, and each token's rate limit.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::{StatusCode, header, request::Parts};
use dashmap::DashMap;

use crate::problem::Problem;
use crate::state::AppState;
pub use crate::tokens::Caller;

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Caller, Problem> {
        let unauthorized = |detail: &str| {
            let mut problem = Problem::new(StatusCode::UNAUTHORIZED, detail);
            problem.field = Some("Authorization".into());
            problem
        };
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            unauthorized("this request needs an `Authorization: Bearer TOKEN` header (`weir token create`)")
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|text| text.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("the Authorization header is not `Bearer TOKEN`"))?;
        let caller =
            state.tokens.authenticate(token.trim())?.ok_or_else(|| unauthorized("the token is unknown or revoked"))?;
        state.limiter.admit(&caller.token)?;
        Ok(caller)
    }
}

impl Caller {
    /// Refuses a caller without an admin token.
    pub fn require_admin(&self) -> Result<(), Problem> {
        if self.admin {
            return Ok(());
        }
        Err(Problem::new(StatusCode::FORBIDDEN, "only an admin token (`weir token create --admin`) may do this"))
    }
}

/// A token bucket per token: `rate` requests a second on average, `burst`
/// at once.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: DashMap<String, Bucket>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    /// A limiter of `rate` requests a second with bursts of `burst`.
    pub fn new(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter { rate, burst: burst.max(1.0), buckets: DashMap::new() }
    }

    /// Takes one request from `token`'s bucket, or says when to come back.
    pub fn admit(&self, token: &str) -> Result<(), Problem> {
        let now = Instant::now();
        let mut bucket =
            self.buckets.entry(token.to_owned()).or_insert_with(|| Bucket { tokens: self.burst, refilled: now });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / self.rate).ceil().max(1.0) as u64;
        let mut problem = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("this token is over its rate limit of {} requests a second; retry after {wait} s", self.rate),
        );
        problem.retry_after = Some(wait);
        Err(problem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_admits_its_burst_then_refuses_with_a_wait() {
        let limiter = RateLimiter::new(1.0, 3.0);
        for _ in 0..3 {
            limiter.admit("t").unwrap();
        }
        let refused = limiter.admit("t").unwrap_err();
        assert_eq!((refused.status, refused.retry_after), (429, Some(1)));
        // Another token has its own bucket.
        limiter.admit("u").unwrap();
    }
}
