import Foundation

/// Who a request comes from, for throttling: the peer's address, or, when the peer is one of the trusted proxies, the
/// address it says it forwarded for (`X-Forwarded-For`, read from the right, past the trusted proxies). A header from
/// anyone else is ignored, so a client cannot choose its own address.
///
/// IPv6 clients are keyed by their /64 network: one host usually holds a whole /64.
struct ClientAddresses: Sendable {
    /// The proxies whose `X-Forwarded-For` is believed, as addresses in their canonical form.
    let trustedProxies: Set<String>

    /// - Throws: ``DashboardConfigurationError`` for a proxy that is not an IPv4 or IPv6 address.
    init(trustedProxies: [String]) throws {
        self.trustedProxies = Set(
            try trustedProxies.map { proxy in
                guard let address = Self.canonical(proxy) else {
                    throw DashboardConfigurationError(
                        message: "--trusted-proxy '\(proxy)' is not an IPv4 or IPv6 address")
                }
                return address
            })
    }

    /// The throttling key of a request from `peer` (its socket's address; `nil` for a Unix socket) carrying
    /// `forwardedFor` (the `X-Forwarded-For` headers' values, in order).
    func client(peer: String?, forwardedFor: [String]) -> String {
        guard let peer = peer.flatMap(Self.canonical) else { return "unknown" }
        guard trustedProxies.contains(peer) else { return Self.key(peer) }
        let hops = forwardedFor.joined(separator: ",").split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        for hop in hops.reversed().prefix(16) {
            guard let address = Self.canonical(hop) else { return Self.key(peer) }  // garbage: keep the proxy's own
            if !trustedProxies.contains(address) { return Self.key(address) }
        }
        return Self.key(peer)
    }

    /// `text` as `inet_ntop` writes it (so `0:0::1` and `::1` compare equal; an IPv4-mapped `::ffff:10.0.0.1` is
    /// `10.0.0.1`), `nil` when it is not an address.
    static func canonical(_ text: String) -> String? {
        guard text.utf8.count <= 64 else { return nil }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { format(AF_INET, $0.baseAddress!, length: INET_ADDRSTRLEN) }
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        return withUnsafeBytes(of: &v6) { bytes in
            // An IPv4 client of a dual-stack socket (::ffff:a.b.c.d) is that IPv4 address, not a /64 shared by all.
            if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
                return bytes[12..<16].map { String($0) }.joined(separator: ".")
            }
            return format(AF_INET6, bytes.baseAddress!, length: INET6_ADDRSTRLEN)
        }
    }

    /// An IPv4 address as it is; an IPv6 address as its /64.
    static func key(_ canonicalAddress: String) -> String {
        var v6 = in6_addr()
        guard canonicalAddress.contains(":"), inet_pton(AF_INET6, canonicalAddress, &v6) == 1 else {
            return canonicalAddress
        }
        withUnsafeMutableBytes(of: &v6) { bytes in
            for index in 8..<16 { bytes[index] = 0 }
        }
        return
            (withUnsafeBytes(of: &v6) { format(AF_INET6, $0.baseAddress!, length: INET6_ADDRSTRLEN) }
            ?? canonicalAddress) + "/64"
    }

    private static func format(_ family: Int32, _ address: UnsafeRawPointer, length: Int32) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(length))
        guard inet_ntop(family, address, &buffer, socklen_t(length)) != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
