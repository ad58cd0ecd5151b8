/// Where and how to connect to one RabbitMQ node, usually parsed from a RabbitMQ URI.
///
/// The URI form follows RabbitMQ's URI specification:
/// `amqp[s]://[user[:password]@]host[:port][/vhost][?key=value&…]`. User, password and vhost are
/// percent-decoded (`%2F` is `/`); an IPv6 host is written in brackets. A missing user or password is `guest`,
/// a missing port is 5672 (`amqp`) or 5671 (`amqps`), and an empty or missing vhost is the default vhost `/`.
///
/// Query parameters: `heartbeat` (seconds, 0 disables), `connection_timeout` (milliseconds), `channel_max`,
/// `frame_max` (bytes), `auth_mechanism` (only `plain`), and for TLS `cacertfile`, `certfile`, `keyfile`,
/// `verify` (`verify_peer`, the default, or `verify_none`) and `server_name_indication`. An unknown parameter
/// is an error, so a typo does not silently fall back to a default.
///
/// The password never appears in ``description`` or ``redactedURI``.
public struct AMQPEndpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var username: String
    /// The password; kept out of every description, log line and error.
    public var password: String
    /// The virtual host, already percent-decoded.
    public var virtualHost: String
    /// Heartbeat interval proposed to the broker; `nil` disables heartbeats. The broker's proposal wins when smaller.
    public var heartbeat: Duration?
    /// Time allowed for the TCP connect, TLS handshake and AMQP handshake together.
    public var connectionTimeout: Duration
    /// Highest channel number this client asks for; 0 accepts the broker's limit.
    public var channelMax: UInt16
    /// Largest frame size in bytes this client asks for (at least 4096).
    public var frameMax: UInt32
    /// TLS settings; `nil` for plain TCP (`amqp://`).
    public var tls: TLSOptions?

    /// TLS settings of an `amqps://` endpoint.
    public struct TLSOptions: Sendable, Hashable {
        /// PEM file of the certificate authorities to trust; `nil` uses the system's default trust store.
        public var caCertificatePath: String?
        /// PEM client certificate for mutual TLS.
        public var certificatePath: String?
        /// PEM private key of the client certificate.
        public var keyPath: String?
        /// Verify the broker's certificate chain and host name (on by default).
        public var verifyPeer: Bool
        /// Host name to send in SNI and to verify the certificate against, when it differs from the host connected to.
        public var serverNameIndication: String?

        public init(
            caCertificatePath: String? = nil,
            certificatePath: String? = nil,
            keyPath: String? = nil,
            verifyPeer: Bool = true,
            serverNameIndication: String? = nil
        ) {
            self.caCertificatePath = caCertificatePath
            self.certificatePath = certificatePath
            self.keyPath = keyPath
            self.verifyPeer = verifyPeer
            self.serverNameIndication = serverNameIndication
        }
    }

    public static let defaultHeartbeat: Duration = .seconds(60)
    public static let defaultConnectionTimeout: Duration = .seconds(10)
    public static let defaultFrameMax: UInt32 = 131_072

    public init(
        host: String = "localhost",
        port: Int? = nil,
        username: String = "guest",
        password: String = "guest",
        virtualHost: String = "/",
        heartbeat: Duration? = AMQPEndpoint.defaultHeartbeat,
        connectionTimeout: Duration = AMQPEndpoint.defaultConnectionTimeout,
        channelMax: UInt16 = 0,
        frameMax: UInt32 = AMQPEndpoint.defaultFrameMax,
        tls: TLSOptions? = nil
    ) {
        self.host = host
        self.port = port ?? (tls == nil ? 5672 : 5671)
        self.username = username
        self.password = password
        self.virtualHost = virtualHost
        self.heartbeat = heartbeat
        self.connectionTimeout = connectionTimeout
        self.channelMax = channelMax
        self.frameMax = frameMax
        self.tls = tls
    }

    /// Parses a RabbitMQ URI.
    /// - Throws: ``AMQPError`` with code ``AMQPError/Code/invalidURI``, whose message names the offending part
    ///   (never the password).
    public init(uri: String) throws(AMQPError) {
        self = try AMQPURIParser.parse(uri)
    }

    /// The URI with the password replaced by `***`.
    public var redactedURI: String {
        let scheme = tls == nil ? "amqp" : "amqps"
        let hostPart = host.contains(":") ? "[\(host)]" : host
        let vhost = AMQPURIParser.percentEncode(virtualHost)
        return "\(scheme)://\(AMQPURIParser.percentEncode(username)):***@\(hostPart):\(port)/\(vhost)"
    }

    public var description: String { redactedURI }
}

extension AMQPEndpoint {
    /// Parses a list of URIs separated by commas or white space (a cluster's nodes), in order.
    /// - Throws: ``AMQPError`` (``AMQPError/Code/invalidURI``) for the first URI that does not parse, or for an
    ///   empty list.
    public static func parseList(_ uris: String) throws(AMQPError) -> [AMQPEndpoint] {
        let parts = uris.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\n" || $0 == "\t" })
        guard !parts.isEmpty else { throw AMQPError(.invalidURI, message: "no URI given") }
        var endpoints: [AMQPEndpoint] = []
        for part in parts { endpoints.append(try AMQPEndpoint(uri: String(part))) }
        return endpoints
    }
}
