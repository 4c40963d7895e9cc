//! The one home of the gateway's HSM label conventions (DESIGN.md §2): the root-wrapping
//! AES key `<HSM_KEY_LABEL>` has its HMAC companion `<HSM_KEY_LABEL>_HMAC`, and every
//! HSM-resident KMS key the gateway generates is labelled `kmsgw-<key id>`.

use uuid::Uuid;

/// Prefix of the labels of HSM-resident keys the gateway generates.
pub const GENERATED_PREFIX: &str = "kmsgw-";

/// The label of the HMAC companion of the root-wrapping key `root`.
pub fn root_hmac(root: &str) -> String {
    format!("{root}_HMAC")
}

/// The label of the HSM-resident key generated for KMS key `id`.
pub fn generated(id: Uuid) -> String {
    format!("{GENERATED_PREFIX}{id}")
}

/// Whether `label` names one of the gateway's own objects (the root key `root`, its HMAC
/// companion, or a key generated for a KMS key): such objects are never adopted.
pub fn is_reserved(label: &str, root: Option<&str>) -> bool {
    label.starts_with(GENERATED_PREFIX) || root.is_some_and(|r| label == r || label == root_hmac(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conventions() {
        assert_eq!(root_hmac("kms-root"), "kms-root_HMAC");
        let id = Uuid::nil();
        assert_eq!(generated(id), "kmsgw-00000000-0000-0000-0000-000000000000");
        assert!(is_reserved(&generated(id), None));
        assert!(is_reserved("kms-root", Some("kms-root")));
        assert!(is_reserved("kms-root_HMAC", Some("kms-root")));
        assert!(!is_reserved("customer-key", Some("kms-root")));
        assert!(!is_reserved("kms-root", None));
    }
}
