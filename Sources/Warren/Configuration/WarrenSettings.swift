import Configuration
import Foundation
import Logging
import WarrenAMQP

/// A worker host's settings, read through swift-configuration from whatever providers the host chose (environment
/// variables, a JSON file, command-line values…). Every key and its environment variable is listed in
/// `docs/configuration.md`; for example `warren.amqp.url` is `WARREN_AMQP_URL`.
public struct WarrenSettings: Sendable {
    /// `warren.amqp.url`: one or more comma-separated RabbitMQ URIs. ``transport(connectionName:logger:)`` needs it.
    public var amqpURL: String?
    /// `warren.grace.period`: seconds handlers may take to finish after SIGTERM (default 30).
    public var gracePeriod: Duration
    /// `warren.message.max.bytes`: larger bodies go to the dead letters undecoded (default 16 MiB).
    public var maximumMessageBytes: Int
    /// `warren.queue.type`: `classic` (default) or `quorum`.
    public var queueType: WarrenTopology.QueueType
    /// `warren.redelivery.limit`: returns unsettled before a message is dead-lettered (default 10; 0 turns the bound
    /// off). See ``WorkerConfiguration/redeliveryLimit``.
    public var redeliveryLimit: Int?
    /// `warren.amqp.heartbeat`: seconds between heartbeats for the URLs that do not choose (`?heartbeat=`); unset
    /// keeps the client's default (``AMQPEndpoint/defaultHeartbeat``). A frozen broker is noticed after two missed
    /// heartbeats: this bounds how long readiness stays green after it froze.
    public var heartbeat: Duration?
    /// `warren.publish.recovery.timeout`: seconds a publish waits for a lost connection to come back (default 30).
    public var publishRecoveryTimeout: Duration
    /// `warren.health.stall` (seconds, default 60) and `warren.health.cancellation.grace` (seconds, default 30): the
    /// bounds of a worker's liveness (``HealthPolicy``).
    public var health: HealthPolicy
    private let config: ConfigReader

    /// Reads the settings.
    /// - Throws: ``WarrenError`` when a value is out of range (an unknown queue type, a negative grace period).
    public init(config: ConfigReader) throws {
        self.config = config
        amqpURL = config.string(forKey: "warren.amqp.url").flatMap { $0.isEmpty ? nil : $0 }
        let grace = Self.number(config, "warren.grace.period") ?? 30
        guard grace >= 0 else {
            throw WarrenError(.invalidConfiguration, "warren.grace.period must be 0 or more seconds")
        }
        gracePeriod = .milliseconds(Int64(grace * 1000))
        maximumMessageBytes = Self.number(config, "warren.message.max.bytes").map { Int($0) } ?? 16 * 1024 * 1024
        let type = config.string(forKey: "warren.queue.type", default: "classic")
        guard let queueType = WarrenTopology.QueueType(rawValue: type) else {
            throw WarrenError(.invalidConfiguration, "warren.queue.type must be classic or quorum, not '\(type)'")
        }
        self.queueType = queueType
        let limit = Self.number(config, "warren.redelivery.limit") ?? 10
        guard limit >= 0, limit == limit.rounded() else {
            throw WarrenError(.invalidConfiguration, "warren.redelivery.limit must be a whole number, 0 or more")
        }
        redeliveryLimit = limit == 0 ? nil : Int(limit)
        let recovery = Self.number(config, "warren.publish.recovery.timeout") ?? 30
        guard recovery >= 0 else {
            throw WarrenError(.invalidConfiguration, "warren.publish.recovery.timeout must be 0 or more seconds")
        }
        publishRecoveryTimeout = .milliseconds(Int64(recovery * 1000))
        if let seconds = Self.number(config, "warren.amqp.heartbeat") {
            guard seconds >= 0, seconds == seconds.rounded() else {
                throw WarrenError(
                    .invalidConfiguration,
                    "warren.amqp.heartbeat must be whole seconds, 0 or more (0 turns heartbeats off)")
            }
            heartbeat = .seconds(Int64(seconds))
        } else {
            heartbeat = nil
        }
        let stall = Self.number(config, "warren.health.stall") ?? 60
        let cancellationGrace = Self.number(config, "warren.health.cancellation.grace") ?? 30
        guard stall > 0, cancellationGrace >= 0 else {
            throw WarrenError(
                .invalidConfiguration,
                "warren.health.stall must be more than 0 seconds, warren.health.cancellation.grace 0 or more")
        }
        health = HealthPolicy(
            stallAfter: .milliseconds(Int64(stall * 1000)),
            cancellationGrace: .milliseconds(Int64(cancellationGrace * 1000)))
    }

    /// The standard providers, highest priority first: `overrides` (e.g. a host's command-line options), environment
    /// variables, then the JSON file at `jsonFile` when given.
    public static func reader(overrides: [String: String] = [:], jsonFile: String? = nil) async throws -> ConfigReader {
        var providers: [any ConfigProvider] = []
        if !overrides.isEmpty {
            // Strings parsed on demand, exactly like environment variables (`warren.grace.period` is WARREN_GRACE_PERIOD).
            let variables = Dictionary(
                overrides.map { key, value in
                    (
                        key.uppercased().replacingOccurrences(of: ".", with: "_").replacingOccurrences(
                            of: "-", with: "_"), value
                    )
                }, uniquingKeysWith: { _, last in last })
            providers.append(EnvironmentVariablesProvider(environmentVariables: variables))
        }
        providers.append(EnvironmentVariablesProvider())
        if let jsonFile {
            let fileSettings = ConfigReader(
                provider: InMemoryProvider(values: [
                    AbsoluteConfigKey(["filePath"]): ConfigValue(.string(jsonFile), isSecret: false)
                ]))
            providers.append(try await FileProvider<JSONSnapshot>(config: fileSettings))
        }
        return ConfigReader(providers: providers)
    }

    /// The RabbitMQ transport of `warren.amqp.url`.
    ///
    /// Never the in-memory transport: a worker whose URL went missing must not look healthy while it consumes
    /// nothing real. A host that wants memory creates `InMemoryTransport()` itself, out loud.
    /// - Throws: ``WarrenError`` with ``WarrenError/Code/invalidConfiguration`` when `warren.amqp.url`
    ///   (`WARREN_AMQP_URL`) is not set; `AMQPError` with ``AMQPError/Code/invalidURI`` for a URI that does not parse.
    public func transport(connectionName: String, logger: Logger = Logger(label: "warren.amqp")) throws
        -> RabbitMQTransport
    {
        guard let amqpURL else {
            throw WarrenError(
                .invalidConfiguration,
                "warren.amqp.url is not set: set WARREN_AMQP_URL (or the host's URL option) to the broker's URI, e.g. amqp://user:password@rabbit:5672/"
            )
        }
        var endpoints = try AMQPEndpoint.parseList(amqpURL)
        if let heartbeat {
            let uris = amqpURL.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\n" || $0 == "\t" })
            for index in endpoints.indices where index < uris.count && !uris[index].contains("heartbeat=") {
                endpoints[index].heartbeat = heartbeat == .zero ? nil : heartbeat
            }
        }
        return RabbitMQTransport(
            endpoints: endpoints, connectionName: connectionName, queueType: queueType,
            publishRecoveryTimeout: publishRecoveryTimeout, logger: logger)
    }

    /// The worker configuration these settings describe.
    public var workerConfiguration: WorkerConfiguration {
        WorkerConfiguration(
            maximumMessageBytes: maximumMessageBytes, gracePeriod: gracePeriod, redeliveryLimit: redeliveryLimit,
            health: health)
    }

    /// `defaults` with the overrides configured for `queue`:
    /// `warren.consumers.<queue>.prefetch`, `.concurrency`, `.enabled`, `.timeout` (seconds, 0 for none),
    /// `.retry.attempts` and `.retry.delays` (comma-separated seconds, e.g. `1,2,4`).
    /// - Throws: ``WarrenError`` for a value out of range.
    public func options(for queue: String, defaults: HandlerOptions) throws -> HandlerOptions {
        var options = defaults
        let prefix = "warren.consumers.\(queue)"
        // The queue name is one key component even when it holds dots.
        func key(_ rest: String...) -> ConfigKey { ConfigKey(["warren", "consumers", queue] + rest) }
        if let prefetch = Self.number(config, key("prefetch")).map({ Int($0) }) {
            guard let value = UInt16(exactly: prefetch) else {
                throw WarrenError(.invalidConfiguration, "\(prefix).prefetch must be 0...65535")
            }
            options.prefetch = value
        }
        if let concurrency = Self.number(config, key("concurrency")).map({ Int($0) }) {
            guard concurrency >= 1 else {
                throw WarrenError(.invalidConfiguration, "\(prefix).concurrency must be at least 1")
            }
            options.maxConcurrentHandlers = concurrency
        }
        if let enabled = config.bool(forKey: key("enabled")) { options.enabled = enabled }
        if let timeout = Self.number(config, key("timeout")) {
            options.timeout = timeout > 0 ? .milliseconds(Int64(timeout * 1000)) : nil
        }
        if let attempts = Self.number(config, key("retry", "attempts")).map({ Int($0) }) {
            guard attempts >= 1 else {
                throw WarrenError(.invalidConfiguration, "\(prefix).retry.attempts must be at least 1")
            }
            options.retry.maxAttempts = attempts
        }
        if let delays = config.string(forKey: key("retry", "delays"))
            ?? config.doubleArray(forKey: key("retry", "delays"))?.map({ "\($0)" }).joined(separator: ",")
        {
            let parsed = delays.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard !parsed.isEmpty, parsed.allSatisfy({ ($0 ?? -1) >= 0 }) else {
                throw WarrenError(
                    .invalidConfiguration, "\(prefix).retry.delays must be comma-separated seconds, e.g. 1,2,4")
            }
            options.retry.backoff = .explicit(parsed.map { .milliseconds(Int64($0! * 1000)) })
        }
        return options
    }

    /// A number whichever way the provider holds it: a double, an integer or a string (JSON files give numbers,
    /// environment variables strings).
    static func number(_ config: ConfigReader, _ key: ConfigKey) -> Double? {
        if let value = config.double(forKey: key) { return value }
        if let value = config.int(forKey: key) { return Double(value) }
        return config.string(forKey: key).flatMap { Double($0.trimmingCharacters(in: .whitespaces)) }
    }
}
