//! Screen sessions: who is at a browser, held in memory.
//!
//! A browser gets a session on its first page load: an anonymous one on the
//! sign-in page, a kiosk one on the kiosk page. Signing in turns an anonymous
//! session into an associate's; a kiosk session never becomes one. Sessions live in
//! memory only: a restart of the agent signs everyone out, which is what a store
//! expects of a restarted till.
//!
//! Invariants:
//! * The session id (cookie) and the CSRF token are 256-bit random values; the id
//!   is replaced on sign-in so an id seen before sign-in is worth nothing after.
//! * An associate session ends after `console_idle` without a request; a kiosk
//!   session forgets its customer after `kiosk_idle` without a request.
//! * The lock is a std mutex held for map operations only, never across `.await`.

use crate::model::{Associate, StaffRole};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Who a session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not signed in (the sign-in page).
    Anonymous,
    /// A signed-in associate or manager.
    Staff(Associate),
    /// A customer kiosk; `customer_id` is the customer who identified at it, if any.
    Kiosk {
        /// The identified customer.
        customer_id: Option<String>,
    },
}

/// One session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The cookie value.
    pub id: String,
    /// Must accompany every state-changing request (`X-CSRF-Token`).
    pub csrf: String,
    /// Who.
    pub role: Role,
    /// The last request.
    pub last_seen: Instant,
}

impl Session {
    /// The associate, if this is a staff session.
    pub fn staff(&self) -> Option<&Associate> {
        match &self.role {
            Role::Staff(a) => Some(a),
            _ => None,
        }
    }

    /// Whether this is a manager's session.
    pub fn is_manager(&self) -> bool {
        matches!(&self.role, Role::Staff(a) if a.role == StaffRole::Manager)
    }
}

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Idle time after which an associate is signed out.
    pub console_idle: Duration,
    /// Idle time after which a kiosk forgets its customer.
    pub kiosk_idle: Duration,
}

/// All sessions of this agent.
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    timeouts: Timeouts,
}

/// More sessions than this and the oldest idle ones are dropped: a page reloaded
/// in a loop must not grow memory without bound.
const MAX_SESSIONS: usize = 4096;

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    /// An empty table.
    pub fn new(timeouts: Timeouts) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            timeouts,
        }
    }

    /// The timeouts.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves a consistent map (every operation
        // is a single insert/remove/update), so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session.
    pub fn create(&self, role: Role) -> Session {
        let session = Session {
            id: random_token(),
            csrf: random_token(),
            role,
            last_seen: Instant::now(),
        };
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            let now = Instant::now();
            map.retain(|_, s| now.duration_since(s.last_seen) < self.timeouts.console_idle);
            if map.len() >= MAX_SESSIONS
                && let Some(oldest) = map.values().min_by_key(|s| s.last_seen).map(|s| s.id.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(session.id.clone(), session.clone());
        session
    }

    /// The session with this id, after applying idle timeouts, and marks it seen.
    /// An associate session past its idle time is gone (`None`); a kiosk session
    /// past its idle time loses its customer.
    pub fn touch(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut map = self.lock();
        let s = map.get_mut(id)?;
        if matches!(s.role, Role::Staff(_)) && now.duration_since(s.last_seen) >= self.timeouts.console_idle {
            map.remove(id);
            return None;
        }
        self.forget_idle_shopper(s, now);
        s.last_seen = now;
        Some(s.clone())
    }

    /// The session without marking it seen (the live-event stream uses this: an
    /// open stream is not activity).
    pub fn peek(&self, id: &str) -> Option<Session> {
        self.lock().get(id).cloned()
    }

    /// Signs an associate in: the old session ends and a new id is issued.
    pub fn sign_in(&self, old_id: Option<&str>, associate: Associate) -> Session {
        if let Some(old) = old_id {
            self.lock().remove(old);
        }
        self.create(Role::Staff(associate))
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Binds the customer who identified at a kiosk to its session.
    pub fn set_kiosk_customer(&self, id: &str, customer: Option<String>) -> bool {
        let mut map = self.lock();
        match map.get_mut(id) {
            Some(Session {
                role: Role::Kiosk { customer_id },
                last_seen,
                ..
            }) => {
                *customer_id = customer;
                *last_seen = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// Whether a kiosk session's customer has been idle past the timeout (the
    /// live-event stream checks this to send the kiosk back to attract).
    pub fn kiosk_idle_expired(&self, id: &str) -> bool {
        let now = Instant::now();
        let mut map = self.lock();
        map.get_mut(id).is_some_and(|s| self.forget_idle_shopper(s, now))
    }

    /// Drops a kiosk session's customer once it has been idle for `kiosk_idle`;
    /// true when it did.
    fn forget_idle_shopper(&self, s: &mut Session, now: Instant) -> bool {
        let idle = now.duration_since(s.last_seen) >= self.timeouts.kiosk_idle;
        match &mut s.role {
            Role::Kiosk { customer_id } if idle && customer_id.is_some() => {
                *customer_id = None;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn associate() -> Associate {
        Associate {
            associate_id: "a1".into(),
            name: "Ann".into(),
            role: StaffRole::Associate,
        }
    }

    fn sessions(console_ms: u64, kiosk_ms: u64) -> Sessions {
        Sessions::new(Timeouts {
            console_idle: Duration::from_millis(console_ms),
            kiosk_idle: Duration::from_millis(kiosk_ms),
        })
    }

    #[test]
    fn sign_in_replaces_the_session_id_and_token() {
        let s = sessions(60_000, 60_000);
        let anon = s.create(Role::Anonymous);
        let staff = s.sign_in(Some(&anon.id), associate());
        assert_ne!(anon.id, staff.id);
        assert_ne!(anon.csrf, staff.csrf);
        assert!(s.touch(&anon.id).is_none(), "the pre-sign-in id is dead");
        assert_eq!(s.touch(&staff.id).unwrap().staff().unwrap().associate_id, "a1");
    }

    #[test]
    fn idle_associate_is_signed_out_and_idle_kiosk_forgets_its_customer() {
        let s = sessions(30, 30);
        let staff = s.create(Role::Staff(associate()));
        let kiosk = s.create(Role::Kiosk { customer_id: None });
        assert!(s.set_kiosk_customer(&kiosk.id, Some("c1".into())));
        assert!(
            !s.set_kiosk_customer(&staff.id, Some("c1".into())),
            "only kiosks bind customers"
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(s.touch(&staff.id).is_none());
        let k = s.touch(&kiosk.id).expect("kiosk sessions stay");
        assert_eq!(k.role, Role::Kiosk { customer_id: None });
    }

    #[test]
    fn kiosk_idle_check_clears_the_customer_once() {
        let s = sessions(60_000, 20);
        let kiosk = s.create(Role::Kiosk { customer_id: None });
        s.set_kiosk_customer(&kiosk.id, Some("c1".into()));
        assert!(!s.kiosk_idle_expired(&kiosk.id));
        std::thread::sleep(Duration::from_millis(40));
        assert!(s.kiosk_idle_expired(&kiosk.id));
        assert!(!s.kiosk_idle_expired(&kiosk.id), "already back at attract");
    }

    #[test]
    fn the_table_is_bounded() {
        let s = sessions(60_000, 60_000);
        for _ in 0..MAX_SESSIONS + 10 {
            s.create(Role::Anonymous);
        }
        assert!(s.lock().len() <= MAX_SESSIONS);
    }
}
