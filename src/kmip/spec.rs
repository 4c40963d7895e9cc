//! The numbers of KMIP that the gateway uses: tags (KMIP 1.4 §9.1.3.1, KMIP 2.1 §11.1)
//! and enumerations (KMIP 1.4 §9.1.3.2, KMIP 2.1 §11), by their specification names.

/// Tags.
pub mod tag {
    pub const ACTIVATION_DATE: u32 = 0x420001;
    pub const ATTRIBUTE: u32 = 0x420008;
    pub const ATTRIBUTE_INDEX: u32 = 0x420009;
    pub const ATTRIBUTE_NAME: u32 = 0x42000A;
    pub const ATTRIBUTE_VALUE: u32 = 0x42000B;
    pub const AUTHENTICATION: u32 = 0x42000C;
    pub const BATCH_COUNT: u32 = 0x42000D;
    pub const BATCH_ERROR_CONTINUATION_OPTION: u32 = 0x42000E;
    pub const BATCH_ITEM: u32 = 0x42000F;
    pub const BATCH_ORDER_OPTION: u32 = 0x420010;
    pub const BLOCK_CIPHER_MODE: u32 = 0x420011;
    pub const COMMON_TEMPLATE_ATTRIBUTE: u32 = 0x42001F;
    pub const COMPROMISE_DATE: u32 = 0x420020;
    pub const COMPROMISE_OCCURRENCE_DATE: u32 = 0x420021;
    pub const CONTACT_INFORMATION: u32 = 0x420022;
    pub const CRYPTOGRAPHIC_ALGORITHM: u32 = 0x420028;
    pub const CRYPTOGRAPHIC_DOMAIN_PARAMETERS: u32 = 0x420029;
    pub const CRYPTOGRAPHIC_LENGTH: u32 = 0x42002A;
    pub const CRYPTOGRAPHIC_PARAMETERS: u32 = 0x42002B;
    pub const CRYPTOGRAPHIC_USAGE_MASK: u32 = 0x42002C;
    pub const CUSTOM_ATTRIBUTE: u32 = 0x42002D;
    pub const DEACTIVATION_DATE: u32 = 0x42002F;
    pub const DESTROY_DATE: u32 = 0x420033;
    pub const HASHING_ALGORITHM: u32 = 0x420038;
    pub const INITIAL_DATE: u32 = 0x420039;
    pub const IV_COUNTER_NONCE: u32 = 0x42003D;
    pub const KEY: u32 = 0x42003F;
    pub const KEY_BLOCK: u32 = 0x420040;
    pub const KEY_COMPRESSION_TYPE: u32 = 0x420041;
    pub const KEY_FORMAT_TYPE: u32 = 0x420042;
    pub const KEY_MATERIAL: u32 = 0x420043;
    pub const KEY_VALUE: u32 = 0x420045;
    pub const KEY_WRAPPING_DATA: u32 = 0x420046;
    pub const KEY_WRAPPING_SPECIFICATION: u32 = 0x420047;
    pub const LAST_CHANGE_DATE: u32 = 0x420048;
    pub const LINK: u32 = 0x42004A;
    pub const LINK_TYPE: u32 = 0x42004B;
    pub const LINKED_OBJECT_IDENTIFIER: u32 = 0x42004C;
    pub const MAC_DATA: u32 = 0x4200C6;
    pub const MAXIMUM_ITEMS: u32 = 0x42004F;
    pub const MAXIMUM_RESPONSE_SIZE: u32 = 0x420050;
    pub const NAME: u32 = 0x420053;
    pub const NAME_TYPE: u32 = 0x420054;
    pub const NAME_VALUE: u32 = 0x420055;
    pub const OBJECT_GROUP: u32 = 0x420056;
    pub const OBJECT_TYPE: u32 = 0x420057;
    pub const OPERATION: u32 = 0x42005C;
    pub const OPERATION_POLICY_NAME: u32 = 0x42005D;
    pub const PADDING_METHOD: u32 = 0x42005F;
    pub const PRIVATE_KEY: u32 = 0x420064;
    pub const PRIVATE_KEY_TEMPLATE_ATTRIBUTE: u32 = 0x420065;
    pub const PRIVATE_KEY_UNIQUE_IDENTIFIER: u32 = 0x420066;
    pub const PROTOCOL_VERSION: u32 = 0x420069;
    pub const PROTOCOL_VERSION_MAJOR: u32 = 0x42006A;
    pub const PROTOCOL_VERSION_MINOR: u32 = 0x42006B;
    pub const PUBLIC_KEY: u32 = 0x42006D;
    pub const PUBLIC_KEY_TEMPLATE_ATTRIBUTE: u32 = 0x42006E;
    pub const PUBLIC_KEY_UNIQUE_IDENTIFIER: u32 = 0x42006F;
    pub const QUERY_FUNCTION: u32 = 0x420074;
    pub const RECOMMENDED_CURVE: u32 = 0x420075;
    pub const REPLACED_UNIQUE_IDENTIFIER: u32 = 0x420076;
    pub const REQUEST_HEADER: u32 = 0x420077;
    pub const REQUEST_MESSAGE: u32 = 0x420078;
    pub const REQUEST_PAYLOAD: u32 = 0x420079;
    pub const RESPONSE_HEADER: u32 = 0x42007A;
    pub const RESPONSE_MESSAGE: u32 = 0x42007B;
    pub const RESPONSE_PAYLOAD: u32 = 0x42007C;
    pub const RESULT_MESSAGE: u32 = 0x42007D;
    pub const RESULT_REASON: u32 = 0x42007E;
    pub const RESULT_STATUS: u32 = 0x42007F;
    pub const REVOCATION_MESSAGE: u32 = 0x420080;
    pub const REVOCATION_REASON: u32 = 0x420081;
    pub const REVOCATION_REASON_CODE: u32 = 0x420082;
    pub const SECRET_DATA: u32 = 0x420085;
    pub const SERVER_INFORMATION: u32 = 0x420088;
    pub const STATE: u32 = 0x42008D;
    pub const STORAGE_STATUS_MASK: u32 = 0x42008E;
    pub const SYMMETRIC_KEY: u32 = 0x42008F;
    pub const TEMPLATE_ATTRIBUTE: u32 = 0x420091;
    pub const TIME_STAMP: u32 = 0x420092;
    pub const UNIQUE_BATCH_ITEM_ID: u32 = 0x420093;
    pub const UNIQUE_IDENTIFIER: u32 = 0x420094;
    pub const VALIDITY_INDICATOR: u32 = 0x42009B;
    pub const VENDOR_IDENTIFICATION: u32 = 0x42009D;
    pub const DIGITAL_SIGNATURE_ALGORITHM: u32 = 0x4200AE;
    pub const ORIGINAL_CREATION_DATE: u32 = 0x4200BC;
    pub const DATA: u32 = 0x4200C2;
    pub const SIGNATURE_DATA: u32 = 0x4200C3;
    pub const RANDOM_IV: u32 = 0x4200C5;
    pub const TAG_LENGTH: u32 = 0x4200CE;
    pub const OFFSET: u32 = 0x420058;
    pub const OFFSET_ITEMS: u32 = 0x4200D4;
    pub const LOCATED_ITEMS: u32 = 0x4200D5;
    pub const AUTHENTICATED_ENCRYPTION_ADDITIONAL_DATA: u32 = 0x4200FE;
    pub const AUTHENTICATED_ENCRYPTION_TAG: u32 = 0x4200FF;
    pub const SENSITIVE: u32 = 0x420120;
    pub const ALWAYS_SENSITIVE: u32 = 0x420121;
    pub const EXTRACTABLE: u32 = 0x420122;
    pub const NEVER_EXTRACTABLE: u32 = 0x420123;
    pub const ATTRIBUTES: u32 = 0x420125;
    pub const COMMON_ATTRIBUTES: u32 = 0x420126;
    pub const PRIVATE_KEY_ATTRIBUTES: u32 = 0x420127;
    pub const PUBLIC_KEY_ATTRIBUTES: u32 = 0x420128;
    pub const ATTRIBUTE_REFERENCE: u32 = 0x42013B;
    pub const CURRENT_ATTRIBUTE: u32 = 0x42013C;
    pub const NEW_ATTRIBUTE: u32 = 0x42013D;
}

/// Operation (KMIP 1.4 §9.1.3.2.27).
pub mod op {
    pub const CREATE: u32 = 0x01;
    pub const CREATE_KEY_PAIR: u32 = 0x02;
    pub const REGISTER: u32 = 0x03;
    pub const REKEY: u32 = 0x04;
    pub const LOCATE: u32 = 0x08;
    pub const GET: u32 = 0x0A;
    pub const GET_ATTRIBUTES: u32 = 0x0B;
    pub const GET_ATTRIBUTE_LIST: u32 = 0x0C;
    pub const ADD_ATTRIBUTE: u32 = 0x0D;
    pub const MODIFY_ATTRIBUTE: u32 = 0x0E;
    pub const DELETE_ATTRIBUTE: u32 = 0x0F;
    pub const ACTIVATE: u32 = 0x12;
    pub const REVOKE: u32 = 0x13;
    pub const DESTROY: u32 = 0x14;
    pub const QUERY: u32 = 0x18;
    pub const DISCOVER_VERSIONS: u32 = 0x1E;
    pub const ENCRYPT: u32 = 0x1F;
    pub const DECRYPT: u32 = 0x20;
    pub const SIGN: u32 = 0x21;
    pub const SIGNATURE_VERIFY: u32 = 0x22;
    pub const MAC: u32 = 0x23;
    pub const MAC_VERIFY: u32 = 0x24;

    /// The operations the gateway answers, as Query lists them.
    pub const SUPPORTED: [u32; 22] = [
        CREATE,
        CREATE_KEY_PAIR,
        REGISTER,
        REKEY,
        LOCATE,
        GET,
        GET_ATTRIBUTES,
        GET_ATTRIBUTE_LIST,
        ADD_ATTRIBUTE,
        MODIFY_ATTRIBUTE,
        DELETE_ATTRIBUTE,
        ACTIVATE,
        REVOKE,
        DESTROY,
        QUERY,
        DISCOVER_VERSIONS,
        ENCRYPT,
        DECRYPT,
        SIGN,
        SIGNATURE_VERIFY,
        MAC,
        MAC_VERIFY,
    ];
}

/// Object Type (§9.1.3.2.12).
pub mod object_type {
    pub const SYMMETRIC_KEY: u32 = 0x02;
    pub const PUBLIC_KEY: u32 = 0x03;
    pub const PRIVATE_KEY: u32 = 0x04;
    pub const SECRET_DATA: u32 = 0x07;
}

/// Cryptographic Algorithm (§9.1.3.2.13).
pub mod algorithm {
    pub const AES: u32 = 0x03;
    pub const RSA: u32 = 0x04;
    pub const ECDSA: u32 = 0x06;
    pub const HMAC_SHA256: u32 = 0x09;
    pub const HMAC_SHA384: u32 = 0x0A;
    pub const HMAC_SHA512: u32 = 0x0B;
    /// KMIP 1.4: EC, for keys of any elliptic-curve algorithm.
    pub const EC: u32 = 0x1A;
}

/// Recommended Curve (§9.1.3.2.5).
pub mod curve {
    pub const P_256: u32 = 0x07;
    pub const P_384: u32 = 0x0A;
    pub const P_521: u32 = 0x0D;
}

/// Block Cipher Mode (§9.1.3.2.14).
pub mod mode {
    pub const CBC: u32 = 0x01;
    pub const GCM: u32 = 0x09;
}

/// Padding Method (§9.1.3.2.15).
pub mod padding {
    pub const NONE: u32 = 0x01;
    pub const OAEP: u32 = 0x02;
    pub const PKCS5: u32 = 0x03;
    pub const PKCS1_V1_5: u32 = 0x08;
    pub const PSS: u32 = 0x0A;
}

/// Hashing Algorithm (§9.1.3.2.16).
pub mod hash {
    pub const SHA_256: u32 = 0x06;
    pub const SHA_384: u32 = 0x07;
    pub const SHA_512: u32 = 0x08;
}

/// Digital Signature Algorithm (§9.1.3.2.7).
pub mod signature {
    pub const SHA256_WITH_RSA: u32 = 0x05;
    pub const SHA384_WITH_RSA: u32 = 0x06;
    pub const SHA512_WITH_RSA: u32 = 0x07;
    pub const RSASSA_PSS: u32 = 0x08;
    pub const ECDSA_WITH_SHA256: u32 = 0x0E;
    pub const ECDSA_WITH_SHA384: u32 = 0x0F;
    pub const ECDSA_WITH_SHA512: u32 = 0x10;
}

/// Key Format Type (§9.1.3.2.3).
pub mod format {
    pub const RAW: u32 = 0x01;
    pub const PKCS_1: u32 = 0x03;
    pub const PKCS_8: u32 = 0x04;
    pub const X_509: u32 = 0x05;
    pub const TRANSPARENT_SYMMETRIC_KEY: u32 = 0x07;
}

/// State (§9.1.3.2.18).
pub mod state {
    pub const PRE_ACTIVE: u32 = 0x01;
    pub const ACTIVE: u32 = 0x02;
    pub const DEACTIVATED: u32 = 0x03;
    pub const COMPROMISED: u32 = 0x04;
    pub const DESTROYED: u32 = 0x05;
    pub const DESTROYED_COMPROMISED: u32 = 0x06;
}

/// Revocation Reason Code (§9.1.3.2.19).
pub mod revocation {
    pub const KEY_COMPROMISE: u32 = 0x02;
    pub const CA_COMPROMISE: u32 = 0x03;
}

/// Link Type (§9.1.3.2.20).
pub mod link {
    pub const PUBLIC_KEY: u32 = 0x0102;
    pub const PRIVATE_KEY: u32 = 0x0103;
    pub const REPLACEMENT_OBJECT: u32 = 0x0106;
    pub const REPLACED_OBJECT: u32 = 0x0107;
}

/// Query Function (§9.1.3.2.24).
pub mod query {
    pub const OPERATIONS: u32 = 0x01;
    pub const OBJECTS: u32 = 0x02;
    pub const SERVER_INFORMATION: u32 = 0x03;
}

/// Result Status (§9.1.3.2.28).
pub mod status {
    pub const SUCCESS: u32 = 0x00;
    pub const OPERATION_FAILED: u32 = 0x01;
}

/// Result Reason (KMIP 1.4 §9.1.3.2.29; the 2.x-only reasons are marked).
pub mod reason {
    pub const ITEM_NOT_FOUND: u32 = 0x01;
    pub const RESPONSE_TOO_LARGE: u32 = 0x02;
    pub const AUTHENTICATION_NOT_SUCCESSFUL: u32 = 0x03;
    pub const INVALID_MESSAGE: u32 = 0x04;
    pub const OPERATION_NOT_SUPPORTED: u32 = 0x05;
    pub const MISSING_DATA: u32 = 0x06;
    pub const INVALID_FIELD: u32 = 0x07;
    pub const FEATURE_NOT_SUPPORTED: u32 = 0x08;
    pub const CRYPTOGRAPHIC_FAILURE: u32 = 0x0A;
    pub const ILLEGAL_OPERATION: u32 = 0x0B;
    pub const PERMISSION_DENIED: u32 = 0x0C;
    pub const INDEX_OUT_OF_BOUNDS: u32 = 0x0E;
    pub const KEY_FORMAT_TYPE_NOT_SUPPORTED: u32 = 0x10;
    pub const NOT_EXTRACTABLE: u32 = 0x17;
    pub const OBJECT_ALREADY_EXISTS: u32 = 0x18;
    /// KMIP 2.0.
    pub const OBJECT_DESTROYED: u32 = 0x36;
    /// KMIP 2.0.
    pub const UNSUPPORTED_PROTOCOL_VERSION: u32 = 0x3F;
    /// KMIP 2.0.
    pub const WRONG_KEY_LIFECYCLE_STATE: u32 = 0x43;
    pub const GENERAL_FAILURE: u32 = 0x100;
}

/// Validity Indicator (§9.1.3.2.23).
pub mod validity {
    pub const VALID: u32 = 0x01;
    pub const INVALID: u32 = 0x02;
}

/// Name Type (§9.1.3.2.11).
pub const NAME_TYPE_TEXT: u32 = 0x01;

/// Cryptographic Usage Mask bits (§9.1.3.3.1).
pub mod usage {
    pub const SIGN: i32 = 0x01;
    pub const VERIFY: i32 = 0x02;
    pub const ENCRYPT: i32 = 0x04;
    pub const DECRYPT: i32 = 0x08;
    pub const MAC_GENERATE: i32 = 0x80;
    pub const MAC_VERIFY: i32 = 0x100;
}

/// The protocol versions the gateway speaks, newest first (Discover Versions' order).
pub const VERSIONS: [(i32, i32); 7] = [(2, 1), (2, 0), (1, 4), (1, 3), (1, 2), (1, 1), (1, 0)];
