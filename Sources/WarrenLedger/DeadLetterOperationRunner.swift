import Foundation
import Logging
import ServiceLifecycle
import Synchronization
@_spi(WarrenTransport) import Warren
import WarrenAMQP

/// Replays and purges the dead letters a ledger holds (``DeadLetterIntake``), one, a failure group or everything a
/// filter selects, as durable operations (``DeadLetterOperation``) recorded in the store.
///
/// An operation goes oldest first, a batch at a time: a replay publishes the batch's copies (pipelined, each
/// confirmed by the broker, marked `x-warren-replay-id: <operation id>`), then commits in one transaction that those
/// dead letters are replayed, their `replayed` events, and the operation's progress. Killed anywhere, the operation
/// stays `running`; the next runner to claim it (its lease runs out after ``leaseDuration``) carries on from the
/// committed progress, so no dead letter is republished by the same operation — except those of a batch whose
/// copies were confirmed when the process died before the commit: they go out again with the same replay mark, which a
/// worker with an idempotency store drops (docs/retries-and-dead-letters.md).
///
/// A `Service`: ``run()`` runs the operations handed to it (``submit(_:)``) and resumes those left running (by a
/// process that died) until shutdown.
public final class DeadLetterOperationRunner: Service, Sendable {
    /// A point in an operation where a test makes it stop as a crash would: nothing after it runs.
    package enum Step: String, Sendable, CaseIterable {
        /// A batch was read from the store; nothing published yet.
        case selected
        /// The batch's copies are confirmed by the broker; the store does not know yet.
        case confirmed
        /// The batch is committed as settled.
        case committed
    }

    public let store: any LedgerStore
    public let transport: RabbitMQTransport
    /// Who holds the leases this runner takes.
    public let owner: String
    public let batchSize: Int
    /// How long an operation stays claimed after its last batch; another runner may take it over after that.
    public let leaseDuration: Duration
    private let fault: (@Sendable (Step, DeadLetterOperation) throws -> Void)?
    private let logger: Logger
    /// The operations this runner executes now. Its lease lets it renew its own claim, so a second ``execute(_:)`` of
    /// one operation in this process (a request's and the resume loop's) waits for the first instead of running too.
    private let executing = Mutex<[String: Execution]>([:])

    /// One run of an operation and how many callers of ``execute(_:)`` await it.
    private struct Execution {
        var run: Task<DeadLetterOperation?, any Error>
        var waiters: Int
    }
    /// Operations handed to ``run()`` by ``submit(_:)``.
    private let submitted: AsyncStream<String>
    private let submissions: AsyncStream<String>.Continuation

    /// - Parameters:
    ///   - transport: the connection replays publish on (its own, or the ledger's).
    ///   - owner: this runner's name in leases; unique per process.
    ///   - batchSize: dead letters per batch (one commit each), 1 to 1,000.
    public convenience init(
        store: any LedgerStore, transport: RabbitMQTransport,
        owner: String = "\(ProcessInfo.processInfo.hostName)/\(UUID().uuidString.prefix(8))",
        batchSize: Int = 100, leaseDuration: Duration = .seconds(30),
        logger: Logger = Logger(label: "warren.ledger.operations")
    ) {
        self.init(
            store: store, transport: transport, owner: owner, batchSize: batchSize, leaseDuration: leaseDuration,
            fault: nil, logger: logger)
    }

    /// For this package's tests: `fault` is called at each ``Step``; what it throws stops the operation there, as a
    /// crash would (its lease is kept until it runs out).
    package init(
        store: any LedgerStore, transport: RabbitMQTransport,
        owner: String = "\(ProcessInfo.processInfo.hostName)/\(UUID().uuidString.prefix(8))",
        batchSize: Int = 100, leaseDuration: Duration = .seconds(30),
        fault: (@Sendable (Step, DeadLetterOperation) throws -> Void)?,
        logger: Logger = Logger(label: "warren.ledger.operations")
    ) {
        self.store = store
        self.transport = transport
        self.owner = owner
        self.batchSize = min(max(1, batchSize), 1_000)
        self.leaseDuration = leaseDuration
        self.fault = fault
        self.logger = logger
        (submitted, submissions) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
    }

    /// Hands an operation (from ``start(_:filter:actor:role:id:)``) to ``run()``, which runs it at once beside the
    /// others; returns at once. Until a ``run()`` runs it waits (a recorded operation is resumed after a restart anyway).
    public func submit(_ id: String) {
        submissions.yield(id)
    }

    /// Records a new operation on what `filter` selects now (the dead letters held that failed before this moment).
    /// - Returns: the operation, `running`, with its ``DeadLetterOperation/total``; run it with ``execute(_:)`` (or
    ///   leave it to ``run()``).
    /// - Throws: the store's errors.
    public func start(
        _ action: DeadLetterOperation.Action, filter: DeadLetterFilter, actor: String, role: String,
        id: String = "op-\(UUID().uuidString.lowercased())"
    ) async throws -> DeadLetterOperation {
        let now = Self.nowMs()
        var operation = DeadLetterOperation(
            id: id, action: action, filter: filter, actor: actor, role: role, createdAtMs: now, total: 0)
        operation.total = try await store.countHeldDeadLetters(matching: operation.selection)
        try await store.createOperation(operation)
        return operation
    }

    /// Runs an operation to its end, if this runner can claim it; when this runner runs it already, waits for that run.
    /// - Returns: the operation as it ended (`done` or `failed`); as it is now when another runner holds it.
    /// - Throws: the store's errors and the broker's connection errors (the operation stays `running`, to be resumed);
    ///   what ``fault`` throws.
    @discardableResult
    public func execute(_ id: String) async throws -> DeadLetterOperation? {
        let run = executing.withLock { running in
            if var execution = running[id] {
                execution.waiters += 1
                running[id] = execution
                return execution.run
            }
            // A join: every caller of `execute` for this operation awaits this one run; it is cancelled once every
            // one of them was (a request that went away alone does not stop the run the resume loop awaits too).
            // Removes itself when done; it takes the lock, so not before it is in the table.
            let run = Task {
                defer { _ = self.executing.withLock { $0.removeValue(forKey: id) } }
                return try await self.claimAndRun(id)
            }
            running[id] = Execution(run: run, waiters: 1)
            return run
        }
        return try await withTaskCancellationHandler {
            try await run.value
        } onCancel: {
            let nobodyWaits = executing.withLock { running -> Bool in
                guard var execution = running[id], execution.run == run else { return false }
                execution.waiters -= 1
                running[id] = execution
                return execution.waiters == 0
            }
            if nobodyWaits { run.cancel() }
        }
    }

    private func claimAndRun(_ id: String) async throws -> DeadLetterOperation? {
        guard let operation = try await store.operation(id: id) else { return nil }
        guard operation.status == .running, try await claim(operation) else { return operation }
        var publisher: AMQPChannel?
        do {
            let ended = try await execute(operation, publisher: &publisher)
            try? await publisher?.close()
            return ended
        } catch {
            try? await publisher?.close()
            throw error
        }
    }

    private func execute(_ operation: DeadLetterOperation, publisher: inout AMQPChannel?) async throws
        -> DeadLetterOperation?
    {
        var operation = operation
        while true {
            let batch = try await store.heldDeadLetters(
                matching: operation.selection, after: operation.cursor, limit: batchSize)
            guard !batch.isEmpty else {
                try await store.finishOperation(id: operation.id, status: .done, error: nil, nowMs: Self.nowMs())
                logger.info(
                    "dead-letter operation done",
                    metadata: [
                        "operation": "\(operation.id)", "action": "\(operation.action.rawValue)",
                        "settled": "\(operation.settled)",
                    ])
                return try await store.operation(id: operation.id)
            }
            try fault?(.selected, operation)
            var settled = batch
            var events: [WarrenEvent]
            var stop: (letter: HeldDeadLetter, error: AMQPError)?
            switch operation.action {
            case .replay:
                let channel = try await openPublisher(reusing: publisher)
                publisher = channel
                let results = await DeadLetterReplay.replay(
                    batch.map { ($0.letter, $0.queue) }, replayID: operation.id, on: channel)
                // Settled: the confirmed copies before the first that was not, so that the progress never passes it.
                events = []
                for result in results {
                    guard case .success(let event) = result else { break }
                    events.append(event)
                }
                settled = Array(batch.prefix(events.count))
                if events.count < results.count, case .failure(let error) = results[events.count] {
                    stop = (batch[events.count], error)
                }
            case .purge:
                events = batch.map { DeadLetterReplay.purgedEvent(of: $0.letter, queue: $0.queue) }
            }
            try fault?(.confirmed, operation)
            operation = try await store.settle(settled, events: events, for: operation, nowMs: Self.nowMs())
            try fault?(.committed, operation)
            if let stop {
                // A lost connection: resumed later. Anything else (the work queue is gone, the broker refused the
                // copy) would fail again: the operation ends, what it settled stays settled.
                if transport.isRecoverable(stop.error) { throw stop.error }
                let why = "the copy of \(stop.letter.messageID) was refused: \(stop.error)"
                try await store.finishOperation(id: operation.id, status: .failed, error: why, nowMs: Self.nowMs())
                logger.warning(
                    "dead-letter operation failed", metadata: ["operation": "\(operation.id)", "error": "\(why)"])
                return try await store.operation(id: operation.id)
            }
            // Cancelled (the runner stops): the operation stays running, and its lease lets the next run carry on.
            try Task.checkCancellation()
            guard try await claim(operation) else { return operation }
        }
    }

    /// Resumes the operations left running, every 5 s until shutdown: those of a process that died (once
    /// their lease ran out) and those recorded without being executed.
    /// - Throws: the store's migration error.
    public func run() async throws {
        try await store.migrate()
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                // Takes over what other processes left: a poll, as they may be anywhere.
                group.addTask {
                    while !Task.isCancelled {
                        await self.resumeUnfinished()
                        try? await Task.sleep(for: .seconds(5))
                    }
                }
                // Ends when the group is cancelled (a stream's iteration returns nil then).
                for await id in self.submitted {
                    group.addTask { await self.runLogged(id) }
                }
            }
        }
    }

    private func runLogged(_ id: String) async {
        do { try await execute(id) } catch {
            logger.warning(
                "dead-letter operation interrupted; it will be resumed",
                metadata: ["operation": "\(id)", "error": "\(error)"])
        }
    }

    /// Runs each operation still running that this runner can claim, once.
    public func resumeUnfinished() async {
        do {
            for id in try await store.unfinishedOperations() { await runLogged(id) }
        } catch {
            logger.warning("could not read the unfinished dead-letter operations", metadata: ["error": "\(error)"])
        }
    }

    private func claim(_ operation: DeadLetterOperation) async throws -> Bool {
        let now = Self.nowMs()
        return try await store.claimOperation(
            id: operation.id, owner: owner, leaseUntilMs: now + leaseDuration.milliseconds, nowMs: now)
    }

    private func openPublisher(reusing channel: AMQPChannel?) async throws -> AMQPChannel {
        if let channel, channel.isOpen { return channel }
        try await transport.start()
        guard let connection = transport.connection else {
            throw WarrenError(.notConsuming, "the transport is not connected")
        }
        let channel = try await connection.openChannel()
        try await channel.enableConfirms()
        return channel
    }

    private static func nowMs() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }
}

extension Duration {
    fileprivate var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
