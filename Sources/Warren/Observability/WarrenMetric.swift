/// One metric Warren emits through swift-metrics: its name, kind and label names, as a Prometheus scrape shows it.
public struct WarrenMetric: Sendable, Hashable {
    /// What a Prometheus exposition calls the metric's type.
    public enum Kind: String, Sendable, Hashable {
        case counter, gauge, histogram
    }

    public var name: String
    public var kind: Kind
    /// The label names, in the order Warren passes them.
    public var labels: [String]
    /// One line for a dashboard's tooltip.
    public var help: String

    public init(name: String, kind: Kind, labels: [String], help: String) {
        self.name = name
        self.kind = kind
        self.labels = labels
        self.help = help
    }
}

/// Every metric Warren emits, with the labels it carries: the catalogue that `docs/operating.md` documents and that
/// a metrics backend can check its own registrations against (WarrenHTTP does, at start). Durations are histograms
/// in seconds (swift-metrics timers).
extension WarrenMetric {
    /// Settled deliveries; `outcome` is `ack`, `retry`, `dead-letter` or `requeue`.
    public static let messages = WarrenMetric(
        name: "warren_messages_total", kind: .counter, labels: ["queue", "type", "outcome"],
        help: "Deliveries settled, by work queue, message type and outcome.")
    /// Handling and settling time of one delivery.
    public static let handlerDuration = WarrenMetric(
        name: "warren_handler_duration_seconds", kind: .histogram, labels: ["queue", "type"],
        help: "Time from taking a delivery to settling it, in seconds.")
    /// How long a message waited in its queue (since it was published, or since its last failure for a retry).
    public static let queueWait = WarrenMetric(
        name: "warren_queue_wait_seconds", kind: .histogram, labels: ["queue", "type"],
        help: "Time a message waited in its queue before a worker took it, in seconds.")
    /// Handlers running now, per queue consumed.
    public static let handlersInFlight = WarrenMetric(
        name: "warren_handlers_in_flight", kind: .gauge, labels: ["queue"], help: "Handlers running now.")
    /// Retry copies published (each confirmed before its original was acked).
    public static let retries = WarrenMetric(
        name: "warren_retries_total", kind: .counter, labels: ["queue", "type"],
        help: "Deliveries sent to a delay queue for another attempt.")
    /// Dead letters written, by reason (`retries-exhausted`, `undecodable`, `unknown-type`, …).
    public static let deadLetters = WarrenMetric(
        name: "warren_dead_letters_total", kind: .counter, labels: ["queue", "type", "reason"],
        help: "Deliveries sent to the dead letters, by reason.")
    /// 1 while the transport's connection is open, 0 while it is lost or closed.
    public static let connectionUp = WarrenMetric(
        name: "warren_connection_up", kind: .gauge, labels: ["connection"],
        help: "1 while the connection to RabbitMQ is open.")
    /// Connections made again after an outage.
    public static let reconnects = WarrenMetric(
        name: "warren_reconnects_total", kind: .counter, labels: ["connection"],
        help: "Connections to RabbitMQ made again after they were lost.")
    /// Consumers registered with the broker now, per queue consumed (0 or 1 per worker).
    public static let consumers = WarrenMetric(
        name: "warren_consumers", kind: .gauge, labels: ["queue"], help: "Consumers of this queue registered now.")
    /// Settlements (acks, requeues) that could not be sent because the channel was gone; the broker redelivers.
    public static let settlementsDropped = WarrenMetric(
        name: "warren_settlements_dropped_total", kind: .counter, labels: ["queue"],
        help: "Acks and requeues that could not be sent because the channel was gone.")

    /// Job events (``WarrenEventPublisher``) dropped because the buffer was full while the broker was slow or away.
    public static let eventsDropped = WarrenMetric(
        name: "warren_events_dropped_total", kind: .counter, labels: ["exchange"],
        help: "Job events dropped because the event buffer was full.")

    /// How far behind the ledger is: the age of the oldest event of the last group it committed, in seconds.
    public static let ledgerLag = WarrenMetric(
        name: "warren_ledger_lag_seconds", kind: .gauge, labels: ["queue"],
        help: "Age of the oldest event in the ledger's last committed group, in seconds.")

    /// What a ledger cut or skipped of the events it was sent (``bound``: `field_cut`, `bad_message_id`,
    /// `events_per_job`, `dead_letters_per_job`; docs/ledger.md, "Bounds").
    public static let ledgerBounded = WarrenMetric(
        name: "warren_ledger_bounded_total", kind: .counter, labels: ["bound"],
        help:
            "Events a ledger cut (a field over its bound) or skipped (a job over its bound, a message id no message has)."
    )

    /// 1 while this process leads the work, 0 while it stands by (``LeaderElection``).
    public static let isLeader = WarrenMetric(
        name: "warren_is_leader", kind: .gauge, labels: ["work"],
        help: "1 while this process leads the work, 0 while it stands by.")
    /// Runs of recurring jobs published by the leader, by outcome (`published`, `skipped_paused`, `missed`).
    public static let scheduledRuns = WarrenMetric(
        name: "warren_scheduled_runs_total", kind: .counter, labels: ["schedule", "outcome"],
        help: "Ticks of recurring jobs: published, skipped while paused, or missed (dropped by the missed-tick policy)."
    )

    /// Every metric above.
    public static let all: [WarrenMetric] = [
        messages, handlerDuration, queueWait, handlersInFlight, retries, deadLetters, connectionUp, reconnects,
        consumers,
        settlementsDropped, eventsDropped, ledgerLag, ledgerBounded, isLeader, scheduledRuns,
    ]
}

/// The former name of the catalogue, now ``WarrenMetric``'s static members (``WarrenMetric/all``).
@available(*, deprecated, renamed: "WarrenMetric")
public typealias WarrenMetrics = WarrenMetric
