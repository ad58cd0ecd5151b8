import Synchronization

/// Whether a worker's loops make progress: what a liveness probe asks. It never depends on the broker (a broker
/// outage is a readiness problem: ``WorkerHealth``); a worker that is not live will not get better by itself, and a
/// supervisor should restart it.
public struct WorkerLiveness: Sendable, Equatable {
    /// One reason the worker is not live.
    public struct Problem: Sendable, Equatable {
        /// What is stuck.
        public struct Kind: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
            public let rawValue: String
            public init(rawValue: String) { self.rawValue = rawValue }
            public var description: String { rawValue }

            /// A consumer loop took no delivery for longer than ``HealthPolicy/stallAfter`` although deliveries were
            /// waiting for it and it had free handler slots (its tasks do not get to run: handlers blocking the
            /// cooperative thread pool, a deadlock).
            public static let consumerStalled = Kind(rawValue: "consumer_stalled")
            /// A handler is still running ``HealthPolicy/cancellationGrace`` after its timeout cancelled it: it
            /// ignores cancellation and holds a handler slot for ever.
            public static let handlerStuck = Kind(rawValue: "handler_stuck")
        }

        /// The queue consumed (a work queue, or its redelivered queue).
        public var queue: String
        public var kind: Kind
        /// How long it has been stuck.
        public var duration: Duration
    }

    /// Empty when the worker is live.
    public var problems: [Problem]

    public var isLive: Bool { problems.isEmpty }
}

/// The bounds behind ``Worker/liveness``.
public struct HealthPolicy: Sendable, Hashable {
    /// How long a consumer loop may take no delivery while deliveries wait for it and handler slots are free before
    /// the worker is not live (`warren.health.stall`, default 60 s).
    public var stallAfter: Duration
    /// How long a handler may run past its timeout (which cancels it) before the worker is not live
    /// (`warren.health.cancellation.grace`, default 30 s). Handlers without a timeout are never judged.
    public var cancellationGrace: Duration

    public init(stallAfter: Duration = .seconds(60), cancellationGrace: Duration = .seconds(30)) {
        self.stallAfter = stallAfter
        self.cancellationGrace = cancellationGrace
    }
}

/// Notices a consumer loop that stopped taking deliveries although it could. Pure: fed observations, it answers for
/// how long the loop has been stuck.
///
/// An observation without progress since the previous one, with deliveries waiting and a free slot, starts (or
/// continues) a stall; any progress, an empty buffer or busy slots end it. The stall is timed from the first
/// observation that saw it, so it is never overestimated (by at most one observation interval underestimated).
struct StallDetector: Sendable {
    private var lastTaken: Int?
    private var stalledSince: ContinuousClock.Instant?

    /// - Returns: how long the loop has been stalled, `nil` when it is not.
    mutating func observe(taken: Int, waiting: Int, freeSlots: Int, now: ContinuousClock.Instant) -> Duration? {
        defer { lastTaken = taken }
        guard waiting > 0, freeSlots > 0, taken == lastTaken else {
            stalledSince = nil
            return nil
        }
        let since = stalledSince ?? now
        stalledSince = since
        return now - since
    }
}

/// One consumer loop's progress, read by liveness checks from any thread: deliveries taken, deliveries waiting in
/// the consumer, handlers running and the deadlines of those with a timeout.
final class ConsumerProgress: Sendable {
    let queue: String
    let concurrency: Int
    private let taken = Atomic<Int>(0)
    private struct State {
        var detector = StallDetector()
        var received: (@Sendable () -> Int?)?
        /// Deliveries taken before the consumer attached now: its own count of received ones starts at zero.
        var takenBefore = 0
        var inFlight: (@Sendable () -> Int)?
        var deadlines: [Int: ContinuousClock.Instant] = [:]
        var nextHandler = 0
    }
    private let state = Mutex(State())

    init(queue: String, concurrency: Int) {
        self.queue = queue
        self.concurrency = concurrency
    }

    /// The consumer's count of received deliveries and the loop's running handlers, once it consumes.
    func attach(received: @escaping @Sendable () -> Int?, inFlight: @escaping @Sendable () -> Int) {
        let taken = taken.load(ordering: .relaxed)
        state.withLock {
            $0.received = received
            $0.takenBefore = taken
            $0.inFlight = inFlight
            $0.detector = StallDetector()
        }
    }

    /// The consumer ended (a partition handed over, a consumer closed): what it had buffered is the broker's again,
    /// not a stall of this loop.
    func detach() {
        state.withLock {
            $0.received = nil
            $0.inFlight = nil
            $0.detector = StallDetector()
        }
    }

    /// Called by the loop for every delivery it takes.
    @inline(__always)
    func tookDelivery() { taken.add(1, ordering: .relaxed) }

    /// A handler with a timeout starts; it must be over by `deadline`. Returns the token for ``handlerEnded(_:)``.
    func handlerStarted(deadline: ContinuousClock.Instant) -> Int {
        state.withLock { state in
            state.nextHandler += 1
            state.deadlines[state.nextHandler] = deadline
            return state.nextHandler
        }
    }

    func handlerEnded(_ token: Int) {
        _ = state.withLock { $0.deadlines.removeValue(forKey: token) }
    }

    /// What is stuck now.
    func problems(now: ContinuousClock.Instant, policy: HealthPolicy) -> [WorkerLiveness.Problem] {
        let taken = taken.load(ordering: .relaxed)
        return state.withLock { state in
            var problems: [WorkerLiveness.Problem] = []
            // Received but not taken: buffered in the consumer, or handed to the loop's task that has not run since.
            let waiting = (state.received?()).flatMap { $0 }.map { max(0, $0 - (taken - state.takenBefore)) } ?? 0
            let freeSlots = concurrency - (state.inFlight?() ?? 0)
            if let stalled = state.detector.observe(taken: taken, waiting: waiting, freeSlots: freeSlots, now: now),
                stalled >= policy.stallAfter
            {
                problems.append(.init(queue: queue, kind: .consumerStalled, duration: stalled))
            }
            if let oldest = state.deadlines.values.min(), now - oldest > policy.cancellationGrace {
                problems.append(.init(queue: queue, kind: .handlerStuck, duration: now - oldest))
            }
            return problems
        }
    }
}
