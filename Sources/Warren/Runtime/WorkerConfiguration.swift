import Foundation

/// What a ``Worker`` accepts and how it stops.
public struct WorkerConfiguration: Sendable {
    /// Codecs by content type; JSON is the default.
    public var codecs: CodecRegistry
    /// Bodies larger than this go to the dead letters without being decoded.
    public var maximumMessageBytes: Int
    /// On a graceful shutdown, how long handlers already running may take to finish before they are cancelled (and
    /// their messages requeued).
    public var gracePeriod: Duration
    /// The host name written into dead letters.
    public var hostName: String
    /// How the worker reconnects after losing its connection.
    public var recovery: RecoveryPolicy
    /// How many times a message may come back unsettled (its handler crashed the process, its worker was killed, its
    /// connection dropped) before it goes to the dead letters with reason `redelivery-limit` instead of running its
    /// handler again; `nil` turns the bound off. Quorum queues count in the broker (`x-delivery-count`); on classic
    /// queues, which only flag a redelivery, the worker re-enqueues a redelivered message once with its count in
    /// `x-warren-redeliveries` (confirmed, then the original is acked) before handing it to a handler.
    public var redeliveryLimit: Int?
    /// The bounds of ``Worker/liveness``: how long a consumer loop may stall, how long a handler may outlive its
    /// timeout.
    public var health: HealthPolicy
    /// How deliveries are traced (``TracingOptions``): on by default, with the process's tracer.
    public var tracing: TracingOptions
    /// Where the worker reports job events (`started`, each settlement) for a ledger; `nil` (the default) reports
    /// none. See ``WarrenEventPublisher``.
    public var events: WarrenEventPublisher?
    /// The broker's `consumer_timeout` (RabbitMQ's default: 30 minutes): a delivery unacked for longer closes its
    /// channel. The worker refuses to start an ordered flow whose worst wait (prefetch × (attempts × timeout + the
    /// retry delays)) would outlast it.
    public var consumerTimeout: Duration
    /// How often a worker that stands by for a partition of an ordered flow (another process holds it) tries to take
    /// it: the longest a partition waits for a new holder after its holder's connection went. At least 50 ms.
    public var partitionTakeoverInterval: Duration

    public init(
        codecs: CodecRegistry = CodecRegistry(),
        maximumMessageBytes: Int = 16 * 1024 * 1024,
        gracePeriod: Duration = .seconds(30),
        hostName: String = ProcessInfo.processInfo.hostName,
        recovery: RecoveryPolicy = .default,
        redeliveryLimit: Int? = 10,
        health: HealthPolicy = HealthPolicy(),
        tracing: TracingOptions = TracingOptions(),
        events: WarrenEventPublisher? = nil,
        consumerTimeout: Duration = .seconds(30 * 60),
        partitionTakeoverInterval: Duration = .seconds(2)
    ) {
        self.codecs = codecs
        self.maximumMessageBytes = maximumMessageBytes
        self.gracePeriod = gracePeriod
        self.hostName = hostName
        self.recovery = recovery
        self.redeliveryLimit = redeliveryLimit.map { max(1, $0) }
        self.health = health
        self.tracing = tracing
        self.events = events
        self.consumerTimeout = consumerTimeout
        self.partitionTakeoverInterval = max(.milliseconds(50), partitionTakeoverInterval)
    }

    /// Why the ordered flows of `registrations` could outlast ``consumerTimeout``, when one could. A flow's partitions
    /// take the largest prefetch of its registrations; each registration's worst run is counted with it.
    func orderedFlowProblem(_ registrations: [HandlerRegistration]) -> String? {
        let ordered = registrations.filter { $0.flow != nil && $0.options.enabled }
        for registration in ordered {
            let options = registration.options
            let prefetch = ordered.filter { $0.queue == registration.queue }.map(\.options.prefetch).max() ?? 0
            guard prefetch > 0 else {
                return
                    "the ordered flow \(registration.queue) needs a prefetch (0 is unlimited): every buffered delivery waits for the ones before it, and the broker's consumer_timeout (\(consumerTimeout)) closes a channel whose delivery waits longer"
            }
            guard let timeout = options.timeout else {
                return
                    "the ordered flow \(registration.queue) needs a handler timeout: a partition waits for its handler, and the broker's consumer_timeout (\(consumerTimeout)) closes a channel whose delivery waits longer"
            }
            // In seconds, as doubles: a huge timeout or many attempts must be refused, not overflow.
            let retry = options.retry
            let attempts = Double(retry.maxAttempts)
            var perMessage = timeout.seconds * attempts + retry.longestDelay.seconds * (attempts - 1)
            perMessage = perMessage.isFinite ? perMessage : .infinity
            let worst = perMessage * Double(prefetch)
            if !(worst < consumerTimeout.seconds) {
                return
                    "the ordered flow \(registration.queue) may keep a delivery unacked for \(Int(min(worst, 1e15))) s (prefetch \(prefetch) × (\(retry.maxAttempts) attempts × \(timeout) + the retry delays)), not below the broker's consumer_timeout (\(consumerTimeout)): lower the prefetch, the attempts or the timeout, or raise consumerTimeout with the broker's"
            }
        }
        return nil
    }
}

/// Reconnection after a lost connection (broker restart, node down, network failure, missed heartbeats): the worker
/// waits `initialDelay`, then doubles the wait up to `maximumDelay`, each spread by ±`jitter`, trying every configured
/// address each time, and re-declares its topology and consumers once connected.
public struct RecoveryPolicy: Sendable, Hashable {
    public var initialDelay: Duration
    public var maximumDelay: Duration
    /// 0...1: each wait is multiplied by a random factor in `1 - jitter ... 1 + jitter`.
    public var jitter: Double
    /// Reconnection attempts before `run()` gives up and throws; `nil` retries for ever.
    public var maximumAttempts: Int?

    public init(
        initialDelay: Duration = .milliseconds(500), maximumDelay: Duration = .seconds(30), jitter: Double = 0.2,
        maximumAttempts: Int? = nil
    ) {
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
        self.jitter = jitter
        self.maximumAttempts = maximumAttempts
    }

    public static let `default` = RecoveryPolicy()

    /// Never reconnect: a lost connection ends `run()` with its error.
    public static let disabled = RecoveryPolicy(maximumAttempts: 0)

    /// The wait before reconnection attempt `attempt` (1-based), for a random `sample` in 0..<1.
    public func delay(beforeAttempt attempt: Int, sample: Double) -> Duration {
        let base = min(initialDelay.seconds * pow(2, Double(max(0, attempt - 1))), maximumDelay.seconds)
        let factor = 1 - jitter + 2 * jitter * min(max(sample, 0), 1)
        return .milliseconds(Int64(base * factor * 1000))
    }
}
