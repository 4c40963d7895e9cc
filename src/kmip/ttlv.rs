//! KMIP's Tag-Type-Length-Value encoding (KMIP 1.4 §9.1, KMIP 2.1 §9.1): a strict decoder
//! and an encoder. Depends on `std` only, so that the fuzz target can include it by path.
