//! The AWS front-ends: the AWS KMS JSON 1.1 API (`POST /` with `X-Amz-Target:
//! TrentService.<Operation>`) and, sharing its Signature Version 4 checks, the XKS proxy
//! API.

pub mod sigv4;
