//! Failed logins, limited per account and per client address, in PostgreSQL so that every server
//! of a deployment shares one count.
//!
//! An attempt is counted as a failure *before* the password is checked, in a short transaction
//! that locks the account's and the address's counters: concurrent guesses queue on those rows
//! and each sees the count the previous one left, so a burst of parallel requests gets no more
//! tries than a sequence of them. A correct password then takes its provisional failure back.
//! Past a number of free failures, each further failure locks the counter for twice as long as
//! the last (up to a ceiling); while a counter is locked no attempt is checked at all, so a
//! correct password does not get through a lock either.

use crate::error::{VaultError, VaultResult};
use crate::Vault;
use chrono::{DateTime, Utc};
use std::net::IpAddr;
use std::time::Duration;

/// How many failures are free and how long the locks after them last.
#[derive(Clone, Copy, Debug)]
pub struct LoginThrottle {
    /// Failures of one account before it is locked.
    pub account_free_failures: i32,
    /// Failures from one client address, over every account, before it is locked.
    pub address_free_failures: i32,
    /// The first lock; each further failure doubles it.
    pub first_lock: Duration,
    /// The longest lock.
    pub max_lock: Duration,
    /// A counter without a failure for this long starts again from zero.
    pub forget_after: Duration,
}

impl Default for LoginThrottle {
    /// Five tries per account and twenty per address, then locks of 1 s, 2 s, 4 s … up to
    /// 15 minutes: about a hundred guesses a day per account, where a user who mistypes a few
    /// times waits seconds.
    fn default() -> Self {
        LoginThrottle {
            account_free_failures: 5,
            address_free_failures: 20,
            first_lock: Duration::from_secs(1),
            max_lock: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(60 * 60),
        }
    }
}

/// Whose failures a counter holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Account,
    Address,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::Address => "address",
        }
    }
}

/// One counter as stored.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Counter {
    failures: i32,
    last_failure_at: Option<DateTime<Utc>>,
    locked_until: Option<DateTime<Utc>>,
}

impl Counter {
    /// No failures on record.
    const FRESH: Counter = Counter {
        failures: 0,
        last_failure_at: None,
        locked_until: None,
    };
}

impl LoginThrottle {
    fn free_failures(&self, scope: Scope) -> i32 {
        match scope {
            Scope::Account => self.account_free_failures,
            Scope::Address => self.address_free_failures,
        }
    }

    /// The counter after one more failure at `now`, or the time to wait if it is locked.
    fn after_failure(
        &self,
        scope: Scope,
        counter: Counter,
        now: DateTime<Utc>,
    ) -> Result<Counter, Duration> {
        if let Some(until) = counter.locked_until.filter(|until| *until > now) {
            return Err((until - now).to_std().unwrap_or(Duration::ZERO));
        }
        let forgotten = counter
            .last_failure_at
            .is_none_or(|at| now - at > chrono_duration(self.forget_after));
        let failures = if forgotten { 1 } else { counter.failures + 1 };
        let over = failures - self.free_failures(scope);
        let locked_until = (over >= 0).then(|| now + chrono_duration(self.lock_for(over)));
        Ok(Counter {
            failures,
            last_failure_at: Some(now),
            locked_until,
        })
    }

    /// The lock after the `over`-th failure past the free ones (counting from 0).
    fn lock_for(&self, over: i32) -> Duration {
        let doublings = u32::try_from(over).unwrap_or(0).min(30);
        self.first_lock
            .saturating_mul(1 << doublings)
            .min(self.max_lock)
    }

    /// The counter once a correct password was given: the account starts again from zero, and
    /// the address's counter takes back this attempt's provisional failure.
    fn after_success(&self, scope: Scope, counter: Counter) -> Counter {
        if scope == Scope::Account {
            return Counter::FRESH;
        }
        let failures = (counter.failures - 1).max(0);
        let still_locked = failures >= self.free_failures(scope);
        Counter {
            failures,
            locked_until: counter.locked_until.filter(|_| still_locked),
            ..counter
        }
    }
}

fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

/// The counters one login attempt was charged to; hand it back with the attempt's outcome.
pub(crate) struct ChargedAttempt {
    account: String,
    address: Option<String>,
}

impl Vault {
    /// Counts a login attempt for `username` from `address` as a failure, unless either counter
    /// is locked: then the attempt is refused with the time to wait, and nothing is checked.
    pub(crate) async fn charge_login_attempt(
        &self,
        username: &str,
        address: Option<IpAddr>,
    ) -> VaultResult<ChargedAttempt> {
        let attempt = ChargedAttempt {
            account: username.to_owned(),
            address: address.map(|address| address.to_string()),
        };
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let now = Utc::now();
        for (scope, subject) in attempt.counters() {
            let counter = lock_counter(&transaction, scope, subject).await?;
            let charged = self
                .throttle
                .after_failure(scope, counter, now)
                .map_err(|wait| VaultError::TooManyAttempts {
                    what: match scope {
                        Scope::Account => "failed logins for this account",
                        Scope::Address => "failed logins from this address",
                    },
                    retry_after: wait,
                })?;
            store_counter(&transaction, scope, subject, charged).await?;
        }
        transaction.commit().await?;
        Ok(attempt)
    }

    /// A correct password: the account starts again from zero and the address's counter
    /// takes this attempt back.
    pub(crate) async fn settle_successful_login(&self, attempt: ChargedAttempt) -> VaultResult<()> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        for (scope, subject) in attempt.counters() {
            let counter = lock_counter(&transaction, scope, subject).await?;
            let settled = self.throttle.after_success(scope, counter);
            store_counter(&transaction, scope, subject, settled).await?;
        }
        transaction
            .execute(
                "DELETE FROM login_throttle
                  WHERE (last_failure_at IS NULL OR last_failure_at < now() - $1::float8 * interval '1 second')
                    AND (locked_until IS NULL OR locked_until < now())",
                &[&self.throttle.forget_after.as_secs_f64()],
            )
            .await?;
        transaction.commit().await?;
        Ok(())
    }
}

impl ChargedAttempt {
    fn counters(&self) -> impl Iterator<Item = (Scope, &str)> {
        std::iter::once((Scope::Account, self.account.as_str())).chain(
            self.address
                .as_deref()
                .map(|address| (Scope::Address, address)),
        )
    }
}

/// Reads a counter and holds its row until the transaction ends (creating it if new).
async fn lock_counter(
    transaction: &deadpool_postgres::Transaction<'_>,
    scope: Scope,
    subject: &str,
) -> Result<Counter, tokio_postgres::Error> {
    transaction
        .execute(
            &transaction
                .prepare_cached(
                    "INSERT INTO login_throttle (scope, subject) VALUES ($1, $2)
                     ON CONFLICT (scope, subject) DO NOTHING",
                )
                .await?,
            &[&scope.as_str(), &subject],
        )
        .await?;
    let row = transaction
        .query_one(
            &transaction
                .prepare_cached(
                    "SELECT failures, last_failure_at, locked_until FROM login_throttle
                      WHERE scope = $1 AND subject = $2 FOR UPDATE",
                )
                .await?,
            &[&scope.as_str(), &subject],
        )
        .await?;
    Ok(Counter {
        failures: row.get(0),
        last_failure_at: row.get(1),
        locked_until: row.get(2),
    })
}

async fn store_counter(
    transaction: &deadpool_postgres::Transaction<'_>,
    scope: Scope,
    subject: &str,
    counter: Counter,
) -> Result<(), tokio_postgres::Error> {
    transaction
        .execute(
            &transaction
                .prepare_cached(
                    "UPDATE login_throttle SET failures = $3, last_failure_at = $4, locked_until = $5
                      WHERE scope = $1 AND subject = $2",
                )
                .await?,
            &[
                &scope.as_str(),
                &subject,
                &counter.failures,
                &counter.last_failure_at,
                &counter.locked_until,
            ],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn free_failures_then_doubling_locks_up_to_the_ceiling() {
        let throttle = LoginThrottle::default();
        let mut counter = Counter::FRESH;
        let mut now = at(0);
        for _ in 0..4 {
            counter = throttle
                .after_failure(Scope::Account, counter, now)
                .unwrap();
            assert_eq!(counter.locked_until, None);
        }
        let mut expected_lock = 1;
        for _ in 0..12 {
            counter = throttle
                .after_failure(Scope::Account, counter, now)
                .unwrap();
            assert_eq!(
                counter.locked_until,
                Some(now + chrono::Duration::seconds(expected_lock))
            );
            assert_eq!(
                throttle.after_failure(Scope::Account, counter, now),
                Err(Duration::from_secs(expected_lock as u64))
            );
            now = counter.locked_until.unwrap();
            expected_lock = (expected_lock * 2).min(15 * 60);
        }
        assert_eq!(expected_lock, 15 * 60);
    }

    #[test]
    fn an_old_failure_is_forgotten() {
        let throttle = LoginThrottle::default();
        let counter = Counter {
            failures: 9,
            last_failure_at: Some(at(0)),
            locked_until: Some(at(60)),
        };
        let later = throttle
            .after_failure(Scope::Account, counter, at(2 * 60 * 60))
            .unwrap();
        assert_eq!(later.failures, 1);
        assert_eq!(later.locked_until, None);
    }

    #[test]
    fn a_success_takes_back_only_its_own_failure() {
        let throttle = LoginThrottle::default();
        let charged = Counter {
            failures: 20,
            last_failure_at: Some(at(0)),
            locked_until: Some(at(1)),
        };
        assert_eq!(
            throttle.after_success(Scope::Address, charged).locked_until,
            None
        );
        assert_eq!(
            throttle.after_success(Scope::Account, charged),
            Counter::FRESH,
            "a correct password clears its account"
        );
        let charged = Counter {
            failures: 21,
            ..charged
        };
        assert_eq!(
            throttle.after_success(Scope::Address, charged).locked_until,
            Some(at(1))
        );
    }
}
