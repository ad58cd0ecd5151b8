/// What a worker's health checks report: per work queue, what its consumer is doing and, when it is not consuming,
/// the last reason. ``isReady`` is the readiness a probe wants: every enabled queue consuming.
public struct WorkerHealth: Sendable, Equatable {
    public struct QueueHealth: Sendable, Equatable {
        /// What a queue's consumer is doing.
        public enum State: String, Sendable {
            /// Its consumer is registered and delivering.
            case consuming
            /// Not consuming, and the worker is (re)connecting or (re)declaring to consume again.
            case recovering
            /// The broker cancelled its consumer (the queue was deleted or became unavailable), or the worker stopped;
            /// a running worker declares the queue again and moves it back to ``consuming``.
            case cancelled
            /// Its registrations are disabled: not consumed, and not needed for readiness.
            case disabled
            /// Another instance does this queue's work (it leads it, or holds the partition of an ordered flow); this
            /// one is ready to take over. Counts as ready.
            case standby
        }

        public var queue: String
        public var state: State
        /// Why the queue is not consuming, when it failed; never a password (transport errors carry none).
        public var lastError: String?
    }

    /// Every work queue of the worker's registrations, sorted by name.
    public var queues: [QueueHealth]

    /// Whether every enabled queue is consuming or on standby (and there is one).
    public var isReady: Bool {
        queues.contains { $0.state != .disabled }
            && queues.allSatisfy { [.consuming, .standby, .disabled].contains($0.state) }
    }
}

/// The worker's health as events change it. Pure: the worker reports what happened, and readiness follows.
struct HealthTracker: Sendable {
    private(set) var queues: [String: WorkerHealth.QueueHealth]
    /// The worker's ``Worker/run()`` returned or threw.
    private(set) var stopped = false
    /// Partitions of ordered flows: consuming while this worker holds one, on standby while another process does.
    private let partitions: Set<String>

    /// Every enabled queue starts as recovering (not consuming yet), every disabled one as disabled.
    init(enabled: Set<String>, disabled: Set<String>, partitions: Set<String> = []) {
        var queues: [String: WorkerHealth.QueueHealth] = [:]
        for queue in disabled.subtracting(enabled) { queues[queue] = .init(queue: queue, state: .disabled) }
        for queue in enabled { queues[queue] = .init(queue: queue, state: .recovering) }
        self.queues = queues
        self.partitions = partitions
    }

    var snapshot: WorkerHealth {
        WorkerHealth(queues: queues.values.sorted { $0.queue < $1.queue })
    }

    /// Every enabled queue's consumer is registered (a partition's state is its own: ``partition(_:held:)``).
    mutating func consuming() {
        guard !stopped else { return }
        let partitions = partitions
        update { health in
            if !partitions.contains(health.queue) { health = .init(queue: health.queue, state: .consuming) }
        }
    }

    /// The worker holds the ordered flow's partition `queue` (consuming), or another process does (standby).
    mutating func partition(_ queue: String, held: Bool) {
        guard !stopped, queues[queue] != nil, queues[queue]?.state != .disabled else { return }
        queues[queue] = .init(queue: queue, state: held ? .consuming : .standby)
    }

    /// The consumers stopped because of `error`: the queue it names goes to `cancelled` when the broker cancelled its
    /// consumer, else to `recovering`, with the error; the others to `recovering`, keeping their own last error.
    /// - Parameter queue: the queue whose consumer failed; `nil` when the failure was not one consumer's (the
    ///   connection could not be made, the topology not declared): then every queue carries the error.
    mutating func failed(queue: String?, error: String, cancelledByBroker: Bool) {
        guard !stopped else { return }  // consumers ending because of the stop are no failure
        update { health in
            if queue == nil || health.queue == queue {
                health.state = cancelledByBroker && queue != nil ? .cancelled : .recovering
                health.lastError = error
            } else {
                health.state = .recovering
            }
        }
    }

    /// The worker stops or stopped: nothing consumes any more. The first reason given stays.
    mutating func stop(reason: String?) {
        guard !stopped else { return }
        stopped = true
        update { health in
            health.state = .cancelled
            if let reason { health.lastError = reason }
        }
    }

    private mutating func update(_ change: (inout WorkerHealth.QueueHealth) -> Void) {
        for (queue, var health) in queues where health.state != .disabled {
            change(&health)
            queues[queue] = health
        }
    }
}
