/// The RabbitMQ URI grammar, kept apart from ``AMQPEndpoint`` so the public type stays readable.
enum AMQPURIParser {
    static func parse(_ uri: String) throws(AMQPError) -> AMQPEndpoint {
        func invalid(_ why: String) -> AMQPError { AMQPError(.invalidURI, message: why) }

        guard let schemeEnd = uri.range(of: "://") else {
            throw invalid("a RabbitMQ URI starts with amqp:// or amqps://")
        }
        let scheme = uri[..<schemeEnd.lowerBound].lowercased()
        let useTLS: Bool
        switch scheme {
        case "amqp": useTLS = false
        case "amqps": useTLS = true
        default: throw invalid("unsupported scheme '\(scheme)': use amqp or amqps")
        }
        var rest = Substring(uri[schemeEnd.upperBound...])

        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        var path: Substring?
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        // rest is the authority: [userinfo@]host[:port]; the last '@' separates userinfo (a password may hold '@'
        // only percent-encoded, but be lenient).
        var userinfo: Substring?
        var hostPort = rest
        if let at = rest.lastIndex(of: "@") {
            userinfo = rest[..<at]
            hostPort = rest[rest.index(after: at)...]
        }

        var username = "guest"
        var password = "guest"
        if let userinfo {
            if let colon = userinfo.firstIndex(of: ":") {
                username = try decode(userinfo[..<colon], what: "user name")
                password = try decode(userinfo[userinfo.index(after: colon)...], what: "password")
            } else {
                username = try decode(userinfo, what: "user name")
            }
        }

        var host = "localhost"
        var portText: Substring?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw invalid("unterminated IPv6 address") }
            host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            let after = hostPort[hostPort.index(after: close)...]
            if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else if !after.isEmpty {
                throw invalid("unexpected text after the IPv6 address")
            }
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = try decode(hostPort[..<colon], what: "host")
            portText = hostPort[hostPort.index(after: colon)...]
        } else if !hostPort.isEmpty {
            host = try decode(hostPort, what: "host")
        }
        if host.isEmpty { host = "localhost" }

        var endpoint = AMQPEndpoint(
            host: host,
            username: username,
            password: password,
            tls: useTLS ? AMQPEndpoint.TLSOptions() : nil
        )
        if let portText, !portText.isEmpty {
            guard let port = Int(portText), (1...65535).contains(port) else {
                throw invalid("port '\(portText)' is not a number from 1 to 65535")
            }
            endpoint.port = port
        }
        if let path {
            if path.contains("/") { throw invalid("the vhost must be percent-encoded: write '/' as %2F") }
            let vhost = try decode(path, what: "vhost")
            endpoint.virtualHost = vhost.isEmpty ? "/" : vhost
        }

        for pair in query.split(separator: "&") where !pair.isEmpty {
            let key: String
            let value: String
            if let eq = pair.firstIndex(of: "=") {
                key = try decode(pair[..<eq], what: "query key")
                value = try decode(pair[pair.index(after: eq)...], what: "value of \(pair[..<eq])")
            } else {
                key = try decode(pair, what: "query key")
                value = ""
            }
            try apply(key: key, value: value, to: &endpoint)
        }
        return endpoint
    }

    private static func apply(key: String, value: String, to endpoint: inout AMQPEndpoint) throws(AMQPError) {
        func number<T: FixedWidthInteger>(_: T.Type) throws(AMQPError) -> T {
            guard let n = T(value) else {
                throw AMQPError(.invalidURI, message: "\(key)=\(value) is not a whole number from \(T.min) to \(T.max)")
            }
            return n
        }
        func requireTLS() throws(AMQPError) {
            if endpoint.tls == nil {
                throw AMQPError(.invalidURI, message: "\(key) applies to amqps:// URIs only")
            }
        }
        switch key {
        case "heartbeat":
            let seconds = try number(UInt16.self)
            endpoint.heartbeat = seconds == 0 ? nil : .seconds(Int(seconds))
        case "connection_timeout":
            let ms = try number(UInt32.self)
            guard ms > 0 else { throw AMQPError(.invalidURI, message: "connection_timeout must be above 0 ms") }
            endpoint.connectionTimeout = .milliseconds(Int(ms))
        case "channel_max":
            endpoint.channelMax = try number(UInt16.self)
        case "frame_max":
            let size = try number(UInt32.self)
            guard size == 0 || size >= 4096 else {
                throw AMQPError(.invalidURI, message: "frame_max must be 0 or at least 4096 bytes")
            }
            endpoint.frameMax = size == 0 ? AMQPEndpoint.defaultFrameMax : size
        case "auth_mechanism":
            guard value.lowercased() == "plain" else {
                throw AMQPError(.invalidURI, message: "auth_mechanism '\(value)' is not supported: only plain is")
            }
        case "cacertfile":
            try requireTLS()
            endpoint.tls?.caCertificatePath = value
        case "certfile":
            try requireTLS()
            endpoint.tls?.certificatePath = value
        case "keyfile":
            try requireTLS()
            endpoint.tls?.keyPath = value
        case "verify":
            try requireTLS()
            switch value {
            case "verify_peer": endpoint.tls?.verifyPeer = true
            case "verify_none": endpoint.tls?.verifyPeer = false
            default: throw AMQPError(.invalidURI, message: "verify must be verify_peer or verify_none, not '\(value)'")
            }
        case "server_name_indication":
            try requireTLS()
            endpoint.tls?.serverNameIndication = (value.isEmpty || value == "disable") ? nil : value
        default:
            throw AMQPError(
                .invalidURI,
                message: "unknown URI parameter '\(key)' (known: heartbeat, connection_timeout, channel_max, "
                    + "frame_max, auth_mechanism, cacertfile, certfile, keyfile, verify, server_name_indication)"
            )
        }
    }

    /// Percent-decodes; a malformed escape is an error naming the part, never its text (it may be a password).
    static func decode(_ text: Substring, what: String) throws(AMQPError) -> String {
        guard text.contains("%") else { return String(text) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                    throw AMQPError(.invalidURI, message: "malformed percent-escape in the \(what)")
                }
                bytes.append(high << 4 | low)
            } else {
                bytes.append(byte)
            }
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else {
            throw AMQPError(.invalidURI, message: "the \(what) is not valid UTF-8 once decoded")
        }
        return decoded
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Percent-encodes everything but RFC 3986 unreserved characters.
    static func percentEncode(_ text: String) -> String {
        var result = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                result.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                result += "%"
                result.unicodeScalars.append(Unicode.Scalar(hex[Int(byte >> 4)]))
                result.unicodeScalars.append(Unicode.Scalar(hex[Int(byte & 0xF)]))
            }
        }
        return result
    }
}
