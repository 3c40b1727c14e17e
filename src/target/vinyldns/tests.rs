//! Unit tests of the VinylDNS connector.
