//! Errors of the PKCS#11 layer. They carry the PKCS#11 return value and the failing
//! function, so callers match on them, never on message text.

use std::fmt;
use std::path::PathBuf;

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};

/// What the module shows in one slot, for error messages and `hsm list-slots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotDescription {
    pub id: u64,
    pub label: String,
    pub serial: String,
    pub model: String,
    pub manufacturer: String,
}

/// A list of slots printed on one line: `ID 1 label "a" serial "b" model "c"; ...`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotList(pub Vec<SlotDescription>);

impl fmt::Display for SlotList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "the module shows no slot with a token");
        }
        write!(f, "slots found: ")?;
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(
                f,
                "ID {} label {:?} serial {:?} model {:?}",
                s.id, s.label, s.serial, s.model
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    #[error("PKCS11_LIB_PATH is not set (the absolute path of the vendor's PKCS#11 library)")]
    LibraryNotConfigured,
    #[error("PKCS11_LIB_PATH must be an absolute path, got {0:?}")]
    LibraryPathNotAbsolute(PathBuf),
    #[error("cannot load the PKCS#11 library {path:?}: {reason}")]
    LibraryLoad { path: PathBuf, reason: String },
    #[error("no token selected: set exactly one of HSM_SLOT, HSM_TOKEN_LABEL or HSM_TOKEN_SERIAL; {slots}")]
    NoTokenSelector { slots: SlotList },
    #[error("several token selectors are set ({given}): set exactly one; {slots}")]
    ConflictingSelectors { given: String, slots: SlotList },
    #[error("HSM_SLOT must be a slot ID (a decimal number), got {0:?}")]
    BadSlotId(String),
    #[error("no token matches {selector}; {slots}")]
    TokenNotFound { selector: String, slots: SlotList },
    #[error("HSM_PIN is not set")]
    PinMissing,
    #[error("the HSM rejected the PIN (CKR_PIN_INCORRECT); not retried, since retrying can lock the token")]
    PinIncorrect,
    #[error(
        "the token's user PIN is locked (CKR_PIN_LOCKED); an HSM administrator must unlock it"
    )]
    PinLocked,
    #[error("HSM_USE_RAND=true but the token has no random number generator")]
    NoRng,
    #[error("HSM key {label:?} not found on the token")]
    KeyNotFound { label: String },
    #[error("HSM key {label:?} is not usable: {problem}")]
    KeyAttributes { label: String, problem: String },
    #[error(
        "HSM key {label:?} is extractable; refused unless danger_allow_extractable_keys is set"
    )]
    ExtractableKeyRefused { label: String },
    /// A key without the protection the gateway requires (CKA_PRIVATE, CKA_SENSITIVE,
    /// CKA_COPYABLE of a key given now); `problem` names the attribute.
    #[error("HSM key {label:?} is refused: {problem}")]
    KeyInsecure { label: String, problem: String },
    /// More than one object of the class has the label: refused rather than pick one.
    #[error("{count} objects of class {class} on the token are labelled {label:?}; refused rather than pick one (give each key a label of its own)")]
    DuplicateLabel {
        label: String,
        class: String,
        count: usize,
    },
    #[error("the token lacks the mechanism(s) {0}")]
    MechanismMissing(String),
    #[error("the HSM is unavailable ({function}: {rv}); the gateway keeps trying to reconnect")]
    Unavailable { function: Function, rv: RvError },
    #[error("the HSM is unavailable: {0}")]
    Reconnecting(String),
    #[error("PKCS#11 {function} failed: {rv}")]
    Pkcs11 { function: Function, rv: RvError },
    #[error("PKCS#11 error: {0}")]
    Other(String),
}

impl HsmError {
    /// True when a cached object handle is no longer valid (the token reloaded objects).
    pub fn is_stale_handle(&self) -> bool {
        matches!(
            self,
            HsmError::Pkcs11 {
                rv: RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid,
                ..
            }
        )
    }

    /// True when the HSM (not the request) is at fault and a retry later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            HsmError::Unavailable { .. } | HsmError::Reconnecting(_)
        )
    }
}

/// Return values after which the session (or the whole login) is gone and the
/// connection must be rebuilt (DESIGN.md section 2).
pub(crate) fn is_connection_lost(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::DeviceRemoved
            | RvError::TokenNotPresent
            | RvError::UserNotLoggedIn
            | RvError::DeviceError
            | RvError::FunctionFailed
            | RvError::CryptokiNotInitialized
    )
}

impl From<CkError> for HsmError {
    fn from(e: CkError) -> Self {
        match e {
            CkError::Pkcs11(rv, function) if is_connection_lost(rv) => {
                HsmError::Unavailable { function, rv }
            }
            CkError::Pkcs11(RvError::PinIncorrect, _) => HsmError::PinIncorrect,
            CkError::Pkcs11(RvError::PinLocked, _) => HsmError::PinLocked,
            CkError::Pkcs11(rv, function) => HsmError::Pkcs11 { function, rv },
            other => HsmError::Other(other.to_string()),
        }
    }
}
