/// How to start a ``LocalBroker``. Every default suits a test run: a fresh node with a random name, its own data
/// directory under the temporary directory (removed on stop), free ports on 127.0.0.1, and the one plugin Warren needs
/// (the consistent-hash exchange of its ordered flows).
public struct LocalBrokerConfiguration: Sendable {
    /// The Erlang node name (the part before `@localhost`); `nil` picks a unique one.
    public var nodeName: String?
    /// Where the node keeps its database, logs and Erlang cookie; `nil` uses a fresh folder in the temporary
    /// directory.
    public var dataDirectory: String?
    /// Plugins to enable, e.g. `["rabbitmq_management"]` (then ``LocalBroker/managementPort`` is set). Give
    /// ``warrenPlugins`` too for a node that serves Warren's ordered flows.
    public var plugins: [String]

    /// The plugins Warren's features need: `rabbitmq_consistent_hash_exchange` (ordered flows, `PartitionedFlow` in
    /// Warren). Shipped with RabbitMQ.
    public static let warrenPlugins = ["rabbitmq_consistent_hash_exchange"]
    /// A TLS listener, in addition to the plain AMQP listener.
    public var tls: TLS?
    /// Extra lines for `rabbitmq.conf`, e.g. `"vm_memory_high_watermark.absolute = 200MB"`.
    public var extraConfiguration: [String]
    /// Stop the node when the process that started it exits, even by a crash (a watchdog checks once a second).
    /// Turn it off for a broker that must outlive its starter, as `swift package local-broker start` does.
    public var stopWhenOwnerExits: Bool
    /// Delete the data directory when the broker is stopped (only one this broker created).
    public var removeDataOnStop: Bool
    /// How long to wait for the node to accept connections.
    public var startupTimeout: Duration
    /// The AMQP port; `nil` picks a free one.
    public var port: Int?
    /// The Erlang cookie (written to the node's `.erlang.cookie`); nodes that form a cluster must share one. `nil`
    /// lets Erlang make a random one.
    public var erlangCookie: String?

    /// A TLS listener's certificate files (PEM).
    public struct TLS: Sendable {
        public var certificateFile: String
        public var keyFile: String
        public var caCertificateFile: String
        /// Ask clients for a certificate signed by the CA (mutual TLS); clients without one are still accepted
        /// unless `requireClientCertificate` is set.
        public var verifyClients: Bool
        public var requireClientCertificate: Bool

        public init(
            certificateFile: String, keyFile: String, caCertificateFile: String, verifyClients: Bool = false,
            requireClientCertificate: Bool = false
        ) {
            self.certificateFile = certificateFile
            self.keyFile = keyFile
            self.caCertificateFile = caCertificateFile
            self.verifyClients = verifyClients
            self.requireClientCertificate = requireClientCertificate
        }
    }

    public init(
        nodeName: String? = nil,
        dataDirectory: String? = nil,
        plugins: [String] = LocalBrokerConfiguration.warrenPlugins,
        tls: TLS? = nil,
        extraConfiguration: [String] = [],
        stopWhenOwnerExits: Bool = true,
        removeDataOnStop: Bool = true,
        startupTimeout: Duration = .seconds(90),
        port: Int? = nil,
        erlangCookie: String? = nil
    ) {
        self.nodeName = nodeName
        self.dataDirectory = dataDirectory
        self.plugins = plugins
        self.tls = tls
        self.extraConfiguration = extraConfiguration
        self.stopWhenOwnerExits = stopWhenOwnerExits
        self.removeDataOnStop = removeDataOnStop
        self.startupTimeout = startupTimeout
        self.port = port
        self.erlangCookie = erlangCookie
    }
}

/// An error starting or controlling a ``LocalBroker``.
public struct LocalBrokerError: Error, Sendable, CustomStringConvertible {
    /// An extensible set: match the codes you handle and keep a `default` for the others.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String {
            case notInstalled, startupFailed, commandFailed, noFreePort
        }

        private let value: Value

        private init(_ value: Value) {
            self.value = value
        }

        /// `rabbitmq-server` or `rabbitmqctl` is not installed.
        public static let notInstalled = Code(.notInstalled)
        /// The node did not come up within the startup timeout; the message quotes its log.
        public static let startupFailed = Code(.startupFailed)
        /// A `rabbitmqctl` command failed.
        public static let commandFailed = Code(.commandFailed)
        /// No free port was found.
        public static let noFreePort = Code(.noFreePort)

        public var description: String { value.rawValue }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "LocalBrokerError.\(code): \(message)" }
}
