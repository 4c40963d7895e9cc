//! The connection to one token: library context, login, the long-lived keeper session,
//! a bounded pool of working sessions, the object-handle cache and recovery.
//!
//! Facts this relies on (DESIGN.md section 2): login belongs to the application, so one
//! keeper session stays open for the life of the connection; closing the last session
//! logs everyone out and invalidates cached handles. Sessions are opened "no drop" so
//! that a session of a finalised context is never closed by number (after a
//! re-initialise the same number may name a new session); they are closed explicitly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::MechanismType;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use secrecy::ExposeSecret;

use super::error::{HsmError, SlotDescription, SlotList};
use super::keys;
use super::{HsmConfig, HsmCounters, SECRET_KEY_CLASS};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const MISSING_KEY_REFRESH: Duration = Duration::from_secs(1);

/// Loads `lib_path` and lists the slots that hold a token (for `hsm list-slots` and errors).
pub fn list_slots(lib_path: &std::path::Path) -> Result<Vec<SlotDescription>, HsmError> {
    let ctx = load(lib_path)?;
    let slots = describe_slots(&ctx);
    let _ = ctx.finalize();
    slots
}

fn load(lib_path: &std::path::Path) -> Result<Pkcs11, HsmError> {
    if !lib_path.is_absolute() {
        return Err(HsmError::LibraryPathNotAbsolute(lib_path.to_path_buf()));
    }
    if !lib_path.exists() {
        return Err(HsmError::LibraryLoad {
            path: lib_path.to_path_buf(),
            reason: "no such file".into(),
        });
    }
    let ctx = Pkcs11::new(lib_path).map_err(|e| HsmError::LibraryLoad {
        path: lib_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(ctx),
        Err(e) => Err(HsmError::LibraryLoad {
            path: lib_path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

fn describe_slots(ctx: &Pkcs11) -> Result<Vec<SlotDescription>, HsmError> {
    let mut out = Vec::new();
    for slot in ctx.get_slots_with_token()? {
        let info = ctx.get_token_info(slot)?;
        out.push(SlotDescription {
            id: slot.id(),
            label: info.label().trim().to_owned(),
            serial: info.serial_number().trim().to_owned(),
            model: info.model().trim().to_owned(),
            manufacturer: info.manufacturer_id().trim().to_owned(),
        });
    }
    Ok(out)
}

/// Picks the slot named by exactly one of the three selectors.
fn select_slot(config: &HsmConfig, slots: &[SlotDescription]) -> Result<SlotDescription, HsmError> {
    let list = || SlotList(slots.to_vec());
    let given: Vec<&str> = [
        (config.slot.is_some(), "HSM_SLOT"),
        (config.token_label.is_some(), "HSM_TOKEN_LABEL"),
        (config.token_serial.is_some(), "HSM_TOKEN_SERIAL"),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .map(|(_, n)| *n)
    .collect();
    let (selector, found) = match given.len() {
        0 => return Err(HsmError::NoTokenSelector { slots: list() }),
        1 => {
            if let Some(slot) = &config.slot {
                let id: u64 = slot
                    .trim()
                    .parse()
                    .map_err(|_| HsmError::BadSlotId(slot.clone()))?;
                (format!("HSM_SLOT={id}"), slots.iter().find(|s| s.id == id))
            } else if let Some(label) = &config.token_label {
                (
                    format!("HSM_TOKEN_LABEL={label:?}"),
                    slots.iter().find(|s| s.label == label.trim()),
                )
            } else {
                let serial = config.token_serial.as_deref().unwrap_or_default();
                (
                    format!("HSM_TOKEN_SERIAL={serial:?}"),
                    slots.iter().find(|s| s.serial == serial.trim()),
                )
            }
        }
        _ => {
            return Err(HsmError::ConflictingSelectors {
                given: given.join(", "),
                slots: list(),
            })
        }
    };
    found.cloned().ok_or(HsmError::TokenNotFound {
        selector,
        slots: list(),
    })
}

fn cache_name(label: &str, class: ObjectClass) -> String {
    format!("{class}/{label}")
}

/// One logged-in incarnation of the library context.
struct Live {
    ctx: Pkcs11,
    slot: Slot,
    /// Held open for the life of the connection so that the login persists.
    keeper: Session,
    idle: Vec<Session>,
}

struct State {
    live: Option<Live>,
    generation: u64,
    in_use: usize,
    /// A reconnect is waiting for the sessions in use to come back.
    draining: bool,
    next_attempt: Instant,
    backoff: Duration,
    /// A wrong or locked PIN: never log in again with it.
    fatal: Option<String>,
}

pub(crate) struct Connection {
    config: HsmConfig,
    token: SlotDescription,
    state: Mutex<State>,
    returned: Condvar,
    handles: Mutex<HashMap<(u64, String), ObjectHandle>>,
    healthy: AtomicBool,
    counters: HsmCounters,
    last_missing_refresh: Mutex<Option<Instant>>,
}

/// A working session lent to one operation, with the cache it may use.
pub(crate) struct Lease<'a> {
    pub session: Session,
    generation: u64,
    conn: &'a Connection,
}

impl Lease<'_> {
    /// The handle of the secret key `label`, from the cache or a search.
    pub fn secret_key(&self, label: &str) -> Result<ObjectHandle, HsmError> {
        self.object(label, SECRET_KEY_CLASS)
    }

    /// The handle of the object of `class` labelled `label`, from the cache or a search.
    pub fn object(&self, label: &str, class: ObjectClass) -> Result<ObjectHandle, HsmError> {
        let cache_key = (self.generation, cache_name(label, class));
        if let Some(h) = self.conn.handles_lock().get(&cache_key) {
            return Ok(*h);
        }
        match self.find_object(label, class)? {
            Some(h) => {
                // A key is judged once per connection, before its handle is cached: one
                // that lost its protection since it was adopted (or that another object
                // replaced under its label) is refused until it is fixed.
                if class == ObjectClass::SECRET_KEY || class == ObjectClass::PRIVATE_KEY {
                    let a = keys::read_protection(&self.session, h)?;
                    keys::check_protection(
                        label,
                        &a,
                        self.conn.config.danger_allow_extractable_keys,
                    )?;
                }
                self.conn.handles_lock().insert(cache_key, h);
                Ok(h)
            }
            None => {
                // Private objects vanish from searches once the login is gone: tell that
                // apart from a key that really is missing.
                let info = self.session.get_session_info()?;
                if matches!(
                    info.session_state(),
                    SessionState::RwUser | SessionState::RoUser
                ) {
                    Err(HsmError::KeyNotFound {
                        label: label.to_owned(),
                    })
                } else {
                    Err(HsmError::Unavailable {
                        function: cryptoki::context::Function::FindObjects,
                        rv: RvError::UserNotLoggedIn,
                    })
                }
            }
        }
    }

    /// Searches without the cache; `None` when no secret key has that label.
    pub fn find_secret_key(&self, label: &str) -> Result<Option<ObjectHandle>, HsmError> {
        self.find_object(label, SECRET_KEY_CLASS)
    }

    /// Searches without the cache; `None` when no object of `class` has that label. More
    /// than one is refused ([`HsmError::DuplicateLabel`]): which one a token returns first
    /// is not defined, so picking one could use another key than the data was made with.
    pub fn find_object(
        &self,
        label: &str,
        class: ObjectClass,
    ) -> Result<Option<ObjectHandle>, HsmError> {
        let found = self.session.find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ])?;
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            many => Err(HsmError::DuplicateLabel {
                label: label.to_owned(),
                class: class.to_string(),
                count: many.len(),
            }),
        }
    }

    /// Drops the cached handles of every object labelled `label`.
    pub fn forget_handle(&self, label: &str) {
        let mut handles = self.conn.handles_lock();
        for class in [
            ObjectClass::SECRET_KEY,
            ObjectClass::PRIVATE_KEY,
            ObjectClass::PUBLIC_KEY,
        ] {
            handles.remove(&(self.generation, cache_name(label, class)));
        }
    }
}

impl Connection {
    pub fn open(config: HsmConfig) -> Result<Self, HsmError> {
        let lib = config
            .lib_path
            .clone()
            .ok_or(HsmError::LibraryNotConfigured)?;
        let ctx = load(&lib)?;
        let slots = describe_slots(&ctx)?;
        let token = match select_slot(&config, &slots) {
            Ok(t) => t,
            Err(e) => {
                let _ = ctx.finalize();
                return Err(e);
            }
        };
        let conn = Connection {
            config,
            token,
            state: Mutex::new(State {
                live: None,
                generation: 0,
                in_use: 0,
                draining: false,
                next_attempt: Instant::now(),
                backoff: FIRST_BACKOFF,
                fatal: None,
            }),
            returned: Condvar::new(),
            handles: Mutex::new(HashMap::new()),
            healthy: AtomicBool::new(false),
            counters: HsmCounters::default(),
            last_missing_refresh: Mutex::new(None),
        };
        let live = match conn.login(ctx) {
            Ok(l) => l,
            Err((ctx, e)) => {
                let _ = ctx.finalize();
                return Err(e);
            }
        };
        if conn.config.use_rand {
            let info = live.ctx.get_token_info(live.slot)?;
            if !info.rng() {
                return Err(HsmError::NoRng);
            }
        }
        conn.state_lock().live = Some(live);
        conn.healthy.store(true, Ordering::Relaxed);
        Ok(conn)
    }

    /// Opens the keeper session and logs in. On failure hands the context back.
    fn login(&self, ctx: Pkcs11) -> Result<Live, (Pkcs11, HsmError)> {
        let slot = match Slot::try_from(self.token.id) {
            Ok(s) => s,
            Err(e) => return Err((ctx, HsmError::Other(e.to_string()))),
        };
        let keeper = match ctx.open_rw_session_no_drop(slot) {
            Ok(s) => s,
            Err(e) => return Err((ctx, e.into())),
        };
        self.counters
            .sessions_opened
            .fetch_add(1, Ordering::Relaxed);
        let pin = match &self.config.pin {
            Some(p) => cryptoki::types::AuthPin::from(p.expose_secret()),
            None => {
                let _ = keeper.close();
                return Err((ctx, HsmError::PinMissing));
            }
        };
        match keeper.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(Live {
                ctx,
                slot,
                keeper,
                idle: Vec::new(),
            }),
            Err(e) => {
                let _ = keeper.close();
                Err((ctx, e.into()))
            }
        }
    }

    pub fn token(&self) -> SlotDescription {
        self.token.clone()
    }

    pub fn config(&self) -> &HsmConfig {
        &self.config
    }

    pub fn counters(&self) -> &HsmCounters {
        &self.counters
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn state_lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handles_lock(&self) -> MutexGuard<'_, HashMap<(u64, String), ObjectHandle>> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn mechanisms(&self) -> Result<Vec<MechanismType>, HsmError> {
        let (ctx, slot) = {
            let st = self.state_lock();
            match &st.live {
                Some(l) => (l.ctx.clone(), l.slot),
                None => return Err(HsmError::Reconnecting("not connected".into())),
            }
        };
        Ok(ctx.get_mechanism_list(slot)?)
    }

    /// Runs `op` on a pooled session. If the session or login was lost, the connection
    /// is rebuilt and `op` runs once more; other errors are returned as they are.
    pub fn run<T>(&self, op: impl FnMut(&Lease<'_>) -> Result<T, HsmError>) -> Result<T, HsmError> {
        let started = Instant::now();
        let result = self.run_inner(op);
        self.counters.operation_latency.observe(started.elapsed());
        if result.is_err() {
            self.counters
                .operation_errors
                .fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    pub fn in_use(&self) -> u64 {
        self.state_lock().in_use as u64
    }

    fn run_inner<T>(
        &self,
        mut op: impl FnMut(&Lease<'_>) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        for attempt in 0..2 {
            let lease = self.checkout()?;
            match op(&lease) {
                Ok(v) => {
                    self.checkin(lease, true);
                    self.healthy.store(true, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) if e.is_unavailable() => {
                    tracing::warn!(error = %e, "HSM session lost; reconnecting");
                    self.mark_lost(lease.generation);
                    self.checkin(lease, false);
                    if attempt == 1 {
                        return Err(e);
                    }
                }
                Err(HsmError::KeyNotFound { label })
                    if attempt == 0 && self.may_refresh_for_missing_key() =>
                {
                    // A key the gateway uses vanished: the token may have lost and then
                    // regained its storage. Re-initialise once (rate-limited) and look again.
                    tracing::warn!(label = %label, "HSM key not found; re-initialising the connection once to look again");
                    self.mark_lost(lease.generation);
                    self.checkin(lease, false);
                }
                Err(e) if attempt == 0 && e.is_stale_handle() => {
                    // The token reloaded its objects (their handles changed): forget the
                    // cached handles and look them up again once.
                    tracing::warn!(error = %e, "HSM object handle no longer valid; looking keys up again");
                    self.handles_lock().clear();
                    self.checkin(lease, true);
                }
                Err(e) => {
                    self.checkin(lease, true);
                    return Err(e);
                }
            }
        }
        Err(HsmError::Reconnecting(
            "the HSM operation failed twice".into(),
        ))
    }

    /// At most one re-initialise per `MISSING_KEY_REFRESH` for missing keys, so that a key
    /// that really is gone does not make every request rebuild the connection.
    fn may_refresh_for_missing_key(&self) -> bool {
        let mut last = self
            .last_missing_refresh
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match *last {
            Some(at) if at.elapsed() < MISSING_KEY_REFRESH => false,
            _ => {
                *last = Some(Instant::now());
                true
            }
        }
    }

    fn checkout(&self) -> Result<Lease<'_>, HsmError> {
        let mut st = self.state_lock();
        loop {
            if let Some(reason) = &st.fatal {
                return Err(HsmError::Reconnecting(reason.clone()));
            }
            if st.live.is_none() {
                st = self.reconnect(st)?;
                continue;
            }
            if st.draining || st.in_use >= self.config.pool_size.max(1) {
                st = self.returned.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            let generation = st.generation;
            let live = st.live.as_mut().expect("checked above");
            let session = match live.idle.pop() {
                Some(s) => s,
                None => match live.ctx.open_rw_session_no_drop(live.slot) {
                    Ok(s) => {
                        self.counters
                            .sessions_opened
                            .fetch_add(1, Ordering::Relaxed);
                        s
                    }
                    Err(e) => {
                        let err = HsmError::from(e);
                        if err.is_unavailable() {
                            drop(st);
                            self.mark_lost(generation);
                            st = self.state_lock();
                            continue;
                        }
                        return Err(err);
                    }
                },
            };
            st.in_use += 1;
            return Ok(Lease {
                session,
                generation,
                conn: self,
            });
        }
    }

    fn checkin(&self, lease: Lease<'_>, reusable: bool) {
        let mut st = self.state_lock();
        st.in_use -= 1;
        let current = st.generation == lease.generation;
        match st.live.as_mut() {
            Some(live) if current && reusable => live.idle.push(lease.session),
            // A session of a lost or finalised context: forget it without closing it.
            _ => drop(lease.session),
        }
        drop(st);
        self.returned.notify_all();
    }

    /// Marks the connection of `generation` as lost; the next checkout rebuilds it.
    fn mark_lost(&self, generation: u64) {
        self.healthy.store(false, Ordering::Relaxed);
        let mut st = self.state_lock();
        if st.generation != generation || st.live.is_none() || st.draining {
            // Already rebuilt, or another thread is rebuilding it.
            return;
        }
        st.draining = true;
        while st.in_use > 1 {
            // Wait for the other operations of this generation (they fail fast on a dead
            // device) so that no stale session number is used after re-initialising.
            let (guard, timeout) = self
                .returned
                .wait_timeout(st, Duration::from_secs(10))
                .unwrap_or_else(|p| p.into_inner());
            st = guard;
            if timeout.timed_out() {
                break;
            }
        }
        if let Some(live) = st.live.take() {
            // Sessions of the lost context are forgotten, not closed (see module doc).
            drop(live.idle);
            drop(live.keeper);
            let _ = live.ctx.finalize();
        }
        st.generation += 1;
        st.draining = false;
        st.next_attempt = Instant::now();
        self.handles_lock().clear();
        drop(st);
        self.returned.notify_all();
    }

    /// Re-initialises the library and logs in again, at most once per back-off period.
    fn reconnect<'g>(
        &'g self,
        mut st: MutexGuard<'g, State>,
    ) -> Result<MutexGuard<'g, State>, HsmError> {
        let now = Instant::now();
        if now < st.next_attempt {
            return Err(HsmError::Reconnecting(format!(
                "next reconnect attempt in {} ms",
                (st.next_attempt - now).as_millis()
            )));
        }
        self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        let lib = self
            .config
            .lib_path
            .clone()
            .ok_or(HsmError::LibraryNotConfigured)?;
        let attempt = load(&lib).and_then(|ctx| {
            let slots = describe_slots(&ctx);
            let found = slots.and_then(|slots| select_slot(&self.config, &slots));
            match found {
                Ok(t) if t.id == self.token.id => self.login(ctx).map_err(|(ctx, e)| {
                    let _ = ctx.finalize();
                    e
                }),
                Ok(_) | Err(_) => {
                    let _ = ctx.finalize();
                    Err(HsmError::Reconnecting("the token is not present".into()))
                }
            }
        });
        match attempt {
            Ok(live) => {
                tracing::info!(slot = self.token.id, "HSM connection re-established");
                st.live = Some(live);
                st.generation += 1;
                st.backoff = FIRST_BACKOFF;
                self.handles_lock().clear();
                self.healthy.store(true, Ordering::Relaxed);
                Ok(st)
            }
            Err(e) => {
                if matches!(e, HsmError::PinIncorrect | HsmError::PinLocked) {
                    st.fatal = Some(e.to_string());
                }
                st.next_attempt = Instant::now() + st.backoff;
                st.backoff = (st.backoff * 2).min(MAX_BACKOFF);
                self.healthy.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, "HSM reconnect failed");
                Err(HsmError::Reconnecting(e.to_string()))
            }
        }
    }

    pub fn shutdown(&self) {
        let mut st = self.state_lock();
        if let Some(live) = st.live.take() {
            for s in live.idle {
                let _ = s.close();
            }
            let _ = live.keeper.close();
            let _ = live.ctx.finalize();
        }
        st.generation += 1;
        st.fatal = Some("the HSM connection was shut down".into());
        self.healthy.store(false, Ordering::Relaxed);
    }
}
