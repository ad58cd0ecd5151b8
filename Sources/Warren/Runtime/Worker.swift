import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Consumes the queues of its registrations and settles every delivery: ack on success, a delayed retry through a
/// delay queue on a transient failure, the dead letters on a permanent one.
///
/// Nothing is settled before its copy is safe: a retry or dead-letter copy is published and confirmed by the
/// transport first, and only then is the original acked. If the copy cannot be confirmed, the original is requeued.
///
/// A worker is a swift-service-lifecycle `Service`: in a `ServiceGroup` with graceful-shutdown signals, SIGTERM
/// stops it gracefully (see ``run()``).
///
/// ```swift
/// let transport = RabbitMQTransport(endpoints: [endpoint])
/// let worker = Worker(transport: transport, registrations: [
///     HandlerRegistration(WelcomeEmail.self, queue: "emails") { email, context in try await send(email) },
/// ])
/// try await worker.run()   // until a graceful shutdown, shutdown() or cancellation
/// ```
public final class Worker: Service, Sendable {
    public let transport: any WarrenTransport
    public let registrations: [HandlerRegistration]
    public let configuration: WorkerConfiguration
    let logger: Logger
    let observer: (@Sendable (SettlementEvent) -> Void)?
    let shutdownSignal = ShutdownSignal()
    private let tracker: AwaitableState<HealthTracker>
    /// The progress of the consumer loops running now (and of those whose handlers have not returned yet).
    private let loops = Mutex<[ConsumerProgress]>([])

    /// - Parameter observer: called after every settled delivery (for metrics or tests); must return quickly.
    public init(
        transport: any WarrenTransport, registrations: [HandlerRegistration],
        configuration: WorkerConfiguration = WorkerConfiguration(), logger: Logger = Logger(label: "warren"),
        observer: (@Sendable (SettlementEvent) -> Void)? = nil
    ) {
        self.transport = transport
        self.registrations = registrations
        self.configuration = configuration
        self.logger = logger
        self.observer = observer
        tracker = AwaitableState(Self.newTracker(registrations))
    }

    private static func newTracker(_ registrations: [HandlerRegistration]) -> HealthTracker {
        HealthTracker(
            enabled: Set(registrations.filter(\.options.enabled).flatMap(\.consumedQueues)),
            disabled: Set(registrations.filter { !$0.options.enabled }.flatMap(\.consumedQueues)),
            partitions: Set(registrations.compactMap(\.flow).flatMap(\.queues)))
    }

    /// Starts the transport, declares the topology, then consumes until a graceful shutdown (of the `ServiceGroup`
    /// the worker runs in), ``shutdown()``, or until the calling task is cancelled. A lost connection is recovered
    /// by itself, with ``WorkerConfiguration/recovery``'s waits.
    ///
    /// After a graceful shutdown or ``shutdown()``: consumers stop, deliveries received but not started are
    /// requeued, handlers already running may finish within ``WorkerConfiguration/gracePeriod``, after which they are
    /// cancelled and their messages requeued; then the transport closes and `run()` returns. Cancelling the calling
    /// task does the same without the grace period.
    /// - Throws: ``WarrenError`` (``WarrenError/Code/topologyConflict``, ``WarrenError/Code/nothingToConsume``) or
    ///   the transport's error when it cannot start, or when its failure is not recoverable or outlasts
    ///   ``WorkerConfiguration/recovery``'s attempts.
    public func run() async throws {
        tracker.update { $0 = Self.newTracker(registrations) }
        do {
            try await withGracefulShutdownHandler {
                try await sendingEvents { try await consumeUntilStopped() }
            } onGracefulShutdown: {
                self.shutdown()
            }
            tracker.update { $0.stop(reason: nil) }
        } catch {
            tracker.update { $0.stop(reason: "\(error)") }
            throw error
        }
    }

    /// Runs `body` with the job events' batches sent beside it (when the worker has events), until it returns.
    private func sendingEvents(_ body: () async throws -> Void) async throws {
        guard let events = configuration.events else { return try await body() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await events.sendWhileRunning() }
            defer { group.cancelAll() }
            try await body()
        }
    }

    private func consumeUntilStopped() async throws {
        let queues = Dictionary(grouping: registrations.filter(\.options.enabled), by: \.queue)
        guard !queues.isEmpty else { throw WarrenError(.nothingToConsume, "no enabled handler registration") }
        if let problem = configuration.orderedFlowProblem(registrations) {
            throw WarrenError(.invalidConfiguration, problem)
        }
        for (name, group) in queues {
            let flows = Set(group.map(\.flow))
            guard flows.count == 1 else {
                throw WarrenError(
                    .invalidConfiguration,
                    "'\(name)' is registered both as a queue and as an ordered flow, or as flows of different partition counts"
                )
            }
        }
        var failedAttempts = 0
        var outage: ContinuousClock.Instant?
        while true {
            do {
                try await runOnce(queues) {
                    if let started = outage {
                        logger.notice(
                            "consuming again",
                            metadata: ["outage_ms": .stringConvertible((ContinuousClock.now - started).milliseconds)])
                        outage = nil
                    }
                    failedAttempts = 0
                }
                await closeTransport()
                logger.info("worker stopped")
                return
            } catch let failure {
                let consumerEnded = failure as? ConsumerEnded
                let error = consumerEnded?.error ?? failure
                tracker.update {
                    $0.failed(
                        queue: consumerEnded?.queue, error: "\(error)",
                        cancelledByBroker: consumerEnded != nil && transport.isConsumerCancellation(error))
                }
                if error is CancellationError || Task.isCancelled || shutdownSignal.isTriggered {
                    await closeTransport()
                    return
                }
                failedAttempts += 1
                guard transport.isRecoverable(error), failedAttempts <= configuration.recovery.maximumAttempts ?? .max
                else {
                    await closeTransport()
                    throw error
                }
                // The transport stays open: `start()` reconnects when the connection is gone, and keeps it when only
                // a channel was (a consumer cancelled by the broker), so publishers sharing it are not disturbed.
                let delay = configuration.recovery.delay(
                    beforeAttempt: failedAttempts, sample: Double.random(in: 0..<1))
                // The transport logs the connection's outage; the worker only says that its consumers wait for it.
                if outage == nil { outage = ContinuousClock.now }
                logger.debug(
                    "consumers stopped; starting them again",
                    metadata: [
                        "error": "\(error)", "attempt": .stringConvertible(failedAttempts),
                        "retry_in_ms": .stringConvertible(delay.milliseconds),
                    ])
                await sleepUnlessShutdown(delay)
                if shutdownSignal.isTriggered || Task.isCancelled { return }
            }
        }
    }

    /// Connects, declares the topology and consumes until a shutdown (returns) or a failure (throws).
    private func runOnce(_ queues: [String: [HandlerRegistration]], connected: () -> Void) async throws {
        try await transport.start()
        var shares: [FlowShare] = []
        // The flows' memberships are left on every way out (with the connection gone, the broker ended them already).
        do {
            try await declareAndConsume(queues, shares: &shares, connected: connected)
        } catch {
            for share in shares { await share.membership.leave() }
            throw error
        }
        for share in shares { await share.membership.leave() }
    }

    /// Declares the topology, joins the ordered flows (into `shares`) and consumes until a shutdown or a failure.
    private func declareAndConsume(
        _ queues: [String: [HandlerRegistration]], shares: inout [FlowShare], connected: () -> Void
    ) async throws {
        var runners: [QueueRunner] = []
        var partitionRunners: [(QueueRunner, FlowShare)] = []
        for (queue, registrations) in queues.sorted(by: { $0.key < $1.key }) {
            if let flow = registrations.first?.flow {
                try await transport.prepare(flow: flow)
                let share = FlowShare(flow: flow, membership: try await transport.join(flow: flow))
                shares.append(share)
                partitionRunners += flow.queues.map {
                    (QueueRunner(queue: $0, registrations: registrations, worker: self, ordered: true), share)
                }
                continue
            }
            try await transport.prepare(
                queue: queue, delays: registrations.reduce(into: []) { $0.formUnion($1.options.retry.possibleDelays) })
            runners.append(QueueRunner(queue: queue, registrations: registrations, worker: self))
            if configuration.redeliveryLimit != nil {
                runners.append(QueueRunner(queue: queue, registrations: registrations, worker: self, isolated: true))
            }
        }
        loops.withLock { $0 = (runners + partitionRunners.map(\.0)).map(\.progress) }
        defer { loops.withLock { $0 = [] } }
        var consumers: [(QueueRunner, TransportConsumer)] = []
        for runner in runners { consumers.append((runner, try await runner.startConsuming())) }
        let started = consumers
        let partitions = partitionRunners
        tracker.update { $0.consuming() }
        connected()
        do {
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for (runner, consumer) in started {
                    group.addTask {
                        do {
                            try await runner.run(consumer)
                        } catch {
                            throw ConsumerEnded(queue: runner.queue, error: error)
                        }
                        return true
                    }
                }
                for (runner, share) in partitions {
                    group.addTask {
                        do {
                            try await self.hold(runner, share: share)
                        } catch {
                            throw ConsumerEnded(queue: runner.queue, error: error)
                        }
                        return true
                    }
                }
                group.addTask {
                    try await self.enforceGracePeriod(on: started.map(\.0) + partitions.map(\.0))
                    return false
                }
                // A stopping process leaves its flows at once: the others' shares grow, so that they take its
                // partitions as it hands them over, not after its other queues drained.
                let memberships = partitions.map(\.1)
                if !memberships.isEmpty {
                    group.addTask {
                        try await self.shutdownSignal.wait()
                        var left = Set<ObjectIdentifier>()
                        for share in memberships where left.insert(ObjectIdentifier(share)).inserted {
                            await share.membership.leave()
                        }
                        return false
                    }
                }
                group.addTask {
                    await self.watchLiveness()
                    return false
                }
                // Not `waitForAll()`: it would wait for every consumer before reporting the one that failed. The first
                // failure leaves the group, which cancels the other consumers, and the worker recovers them all.
                var running = started.count + partitions.count
                while running > 0, let isRunner = try await group.next() {
                    if isRunner { running -= 1 }
                }
                group.cancelAll()
            }
        } catch is GracePeriodExpired {
            // The handlers still running were cancelled and requeued their messages.
        }
    }

    /// Holds an ordered flow's partition whenever no other process does and this one holds less than its share
    /// (``PartitionedFlow/share(members:)``): takes its exclusive consumer and handles it until a shutdown (returns),
    /// a failure (throws), or until it holds more than its share because more processes joined (then it hands the
    /// partition over and stands by). While it may not or cannot take it, stands by and looks again every
    /// ``WorkerConfiguration/partitionTakeoverInterval``.
    private func hold(_ partition: QueueRunner, share: FlowShare) async throws {
        let interval = configuration.partitionTakeoverInterval
        var standing = false
        func standBy() async {
            if !standing {
                logger.info("standing by for the partition", metadata: ["queue": "\(partition.source)"])
                standing = true
            }
            tracker.update { $0.partition(partition.source, held: false) }
            await sleepUnlessShutdown(interval)
        }
        while !shutdownSignal.isTriggered, !Task.isCancelled {
            let limit = try await share.limit(maxAge: interval / 2)
            guard share.reserve(limit: limit) else {
                await standBy()
                continue
            }
            guard let consumer = try await partition.takePartition() else {
                share.unreserve()
                await standBy()
                continue
            }
            tracker.update { $0.partition(partition.source, held: true) }
            logger.info(
                "holding the partition", metadata: ["queue": "\(partition.source)", "limit": .stringConvertible(limit)])
            standing = false
            partition.release.update { $0 = false }
            let handedOver = try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    try await partition.run(consumer)
                    return false
                }
                // More processes may have joined: one holding more than its share hands a partition over.
                group.addTask {
                    while !Task.isCancelled {
                        try await Task.sleep(for: interval)
                        let limit = try await share.limit(maxAge: interval / 2)
                        if share.releaseOne(over: limit) {
                            partition.release.update { $0 = true }
                            return true
                        }
                    }
                    return false
                }
                let first = try await group.next() ?? false
                if first { try await group.next().map { _ in () } }  // the partition's run, ending after the release
                group.cancelAll()
                return first
            }
            if handedOver {
                logger.info(
                    "handed the partition over: more processes share the flow",
                    metadata: ["queue": "\(partition.source)"])
                // Long enough for a process below its share to take it first.
                await sleepUnlessShutdown(interval * 2)
            } else {
                share.unreserve()
            }
        }
    }

    /// After a shutdown, waits for the handlers still running; when the grace period is over first, throws so that
    /// the consumers' group (and with it every running handler) is cancelled.
    private func enforceGracePeriod(on runners: [QueueRunner]) async throws {
        try await shutdownSignal.wait()
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: configuration.gracePeriod)
        for runner in runners where !(await runner.inFlight.waitUntilIdle(timeout: clock.now.duration(to: deadline))) {
            logger.warning(
                "grace period over: cancelling handlers still running",
                metadata: ["queue": "\(runner.source)", "in_flight": .stringConvertible(runner.inFlight.current)])
            throw GracePeriodExpired()
        }
        // Idle in time: returning leaves the consumers to end by themselves once their cancelled consumers drained.
    }

    /// Looks at the loops' progress regularly, so that a stall is timed from when it began rather than from the
    /// first probe that asks; until cancelled. A probe's own look (``liveness``) still works when this task cannot
    /// run (a starved thread pool).
    private func watchLiveness() async {
        let interval = min(Duration.seconds(1), configuration.health.stallAfter / 4)
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            _ = liveness
        }
    }

    /// Sends the job events still buffered (for at most 5 s), then closes the transport.
    private func closeTransport() async {
        await configuration.events?.flush(timeout: .seconds(5))
        await transport.close()
    }

    /// Waits `delay`, or less when a shutdown comes first.
    private func sleepUnlessShutdown(_ delay: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: delay) }
            group.addTask { try? await self.shutdownSignal.wait() }
            await group.next()
            group.cancelAll()
        }
    }

    /// What each of the worker's queues is doing now, for health checks.
    public var health: WorkerHealth { tracker.value.snapshot }

    /// Whether the worker's loops make progress, for a liveness probe: not live when a consumer loop has taken no
    /// delivery for ``HealthPolicy/stallAfter`` although deliveries were waiting and handler slots free, or when a
    /// handler runs ``HealthPolicy/cancellationGrace`` past its timeout. Independent of the broker. Cheap; safe to
    /// read from any thread, also while the cooperative thread pool is starved.
    public var liveness: WorkerLiveness {
        let now = ContinuousClock.now
        let policy = configuration.health
        return WorkerLiveness(problems: loops.withLock { $0 }.flatMap { $0.problems(now: now, policy: policy) })
    }

    /// Whether the worker is consuming every one of its enabled queues right now (``health``'s readiness). False while
    /// it connects, after a connection loss until it has recovered, and after it stopped.
    public var isConsuming: Bool { tracker.value.snapshot.isReady }

    /// The last failure that keeps a queue from consuming, when there is one.
    public var healthProblem: String? { tracker.value.snapshot.queues.lazy.compactMap(\.lastError).first }

    /// Returns once the worker consumes every one of its queues, at once when it does: from then on a message
    /// published to one of them is routed and handled. Call it while ``run()`` runs (from another task).
    /// - Parameter timeout: how long to wait.
    /// - Throws: ``WarrenError`` with ``WarrenError/Code/notConsuming`` when the worker stopped (its ``run()``
    ///   returned or threw) or did not consume within `timeout`, with the last problem it met;
    ///   `CancellationError` when the waiting task is cancelled.
    public func waitUntilConsuming(timeout: Duration = .seconds(60)) async throws {
        let settled = await tracker.wait(until: { $0.snapshot.isReady || $0.stopped }, timeout: timeout)
        try Task.checkCancellation()
        guard !isConsuming else { return }
        let why = healthProblem.map { ": \($0)" } ?? ""
        throw WarrenError(
            .notConsuming,
            settled
                ? "the worker stopped before it consumed\(why)" : "the worker did not consume within \(timeout)\(why)")
    }

    /// Begins a graceful shutdown (see ``run()``). Returns at once; `run()` returns when it is done.
    public func shutdown() {
        logger.info(
            "graceful shutdown requested",
            metadata: ["grace_period_ms": .stringConvertible(configuration.gracePeriod.milliseconds)])
        shutdownSignal.trigger()
        // Not ready from now on: a probe sends no more work while the handlers drain.
        tracker.update { $0.stop(reason: "the worker is shutting down") }
    }
}

/// How many of an ordered flow's partitions this worker holds, against its share among the flow's members.
final class FlowShare: Sendable {
    let flow: PartitionedFlow
    let membership: FlowMembership
    private let held = Mutex(0)
    /// The member count last asked, and when: the partitions' loops share it rather than each asking the broker.
    private let members = Mutex<(count: Int, at: ContinuousClock.Instant)?>(nil)

    /// This process's share now (``PartitionedFlow/share(members:)``), the member count at most `maxAge` old.
    func limit(maxAge: Duration) async throws -> Int {
        let now = ContinuousClock.now
        if let known = members.withLock({ $0 }), now - known.at < maxAge { return flow.share(members: known.count) }
        let count = try await membership.members()
        members.withLock { $0 = (count, now) }
        return flow.share(members: count)
    }

    init(flow: PartitionedFlow, membership: FlowMembership) {
        self.flow = flow
        self.membership = membership
    }

    /// Counts one more partition held when that stays within `limit`.
    func reserve(limit: Int) -> Bool {
        held.withLock { held in
            guard held < limit else { return false }
            held += 1
            return true
        }
    }

    func unreserve() {
        held.withLock { $0 = max(0, $0 - 1) }
    }

    /// Counts one partition fewer when more than `limit` are held: `true` for the one partition to hand over.
    func releaseOne(over limit: Int) -> Bool {
        held.withLock { held in
            guard held > limit else { return false }
            held -= 1
            return true
        }
    }
}

/// A queue's consumer ended with `error`: which queue failed, for the health report.
private struct ConsumerEnded: Error {
    var queue: String
    var error: any Error
}
