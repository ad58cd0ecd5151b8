import Foundation
import Logging
import Tracing
import WarrenAMQP

/// Consumes one work queue (or its ``WarrenTopology/redeliveredQueue``) and settles each delivery.
struct QueueRunner: Sendable {
    /// The work queue: retries, dead letters and metrics are its.
    let queue: String
    /// The queue consumed: the work queue, or its redelivered queue.
    let source: String
    /// A partition of an ordered flow: one message at a time, a failed attempt retried in place, a returned message
    /// counted on the broker rather than moved behind the others.
    let ordered: Bool
    let handlers: [String: HandlerRegistration]
    /// The registration when there is only one.
    private let onlyHandler: HandlerRegistration?
    let prefetch: UInt16
    let concurrency: Int
    let worker: Worker
    let metrics: WorkerMetrics
    /// Read per delivery: copied out of the worker's configuration once, not per delivery.
    private let codecs: CodecRegistry
    private let maximumMessageBytes: Int
    private let redeliveryLimit: Int?
    private let tracing: TracingOptions
    private let events: WarrenEventPublisher?
    /// The tracer that makes spans, `nil` when none does (tracing off, or the no-op tracer).
    private let tracer: (any Tracer)?
    /// Handlers running now; a shutdown waits for it to reach zero within the grace period.
    let inFlight = InFlightCounter()
    /// What liveness checks read: deliveries taken, waiting, and the deadlines of running handlers.
    let progress: ConsumerProgress
    /// An ordered partition's holder sets it to hand the partition over (its worker holds more than its share): the
    /// partition then stops as on a shutdown, and the worker goes on. Reset before each hold.
    let release = AwaitableState(false)

    /// - Parameters:
    ///   - isolated: consume the work queue's redelivered queue, one message at a time.
    ///   - ordered: `queue` is a partition of an ordered flow.
    init(
        queue: String, registrations: [HandlerRegistration], worker: Worker, isolated: Bool = false,
        ordered: Bool = false
    ) {
        self.queue = queue
        self.source = isolated ? WarrenTopology(queue: queue).redeliveredQueue : queue
        self.ordered = ordered
        self.handlers = Dictionary(registrations.map { ($0.messageType, $0) }, uniquingKeysWith: { first, _ in first })
        self.onlyHandler = handlers.count == 1 ? handlers.first?.value : nil
        self.prefetch = isolated ? 1 : registrations.map(\.options.prefetch).max() ?? 20
        self.concurrency = isolated || ordered ? 1 : registrations.map(\.options.maxConcurrentHandlers).max() ?? 1
        self.worker = worker
        self.metrics = WorkerMetrics(queue: queue, source: source)
        self.codecs = worker.configuration.codecs
        self.maximumMessageBytes = worker.configuration.maximumMessageBytes
        self.redeliveryLimit = worker.configuration.redeliveryLimit
        self.tracing = worker.configuration.tracing
        self.events = worker.configuration.events
        self.tracer = worker.configuration.tracing.activeTracer
        self.progress = ConsumerProgress(queue: source, concurrency: concurrency)
    }

    private var logger: Logger { worker.logger }
    private var configuration: WorkerConfiguration { worker.configuration }

    func startConsuming() async throws -> TransportConsumer {
        try await worker.transport.consume(queue: source, prefetch: prefetch)
    }

    /// The partition's exclusive consumer, `nil` while another process holds it.
    func takePartition() async throws -> TransportConsumer? {
        try await worker.transport.consumeExclusively(queue: source, prefetch: prefetch)
    }

    /// Consumes until the consumer ends: cancelled by a shutdown (then what was received but not started is
    /// requeued and running handlers finish; the worker bounds that with the grace period by cancelling this task),
    /// or failed with the connection (thrown).
    func run(_ consumer: TransportConsumer) async throws {
        let shutdown = worker.shutdownSignal
        let inFlight = inFlight
        progress.attach(received: { consumer.received }, inFlight: { inFlight.current })
        defer { progress.detach() }
        metrics.consumers.record(1)
        defer { metrics.consumers.record(0) }
        logger.info(
            "consuming",
            metadata: [
                "queue": "\(source)", "prefetch": .stringConvertible(prefetch),
                "concurrency": .stringConvertible(concurrency),
            ])
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                // A shutdown cancels the consumer; this watcher ends with the consumer (cancelled below) whether or not
                // a shutdown came.
                group.addTask {
                    _ = await untilStopped(timeout: nil)
                    try Task.checkCancellation()
                    if ordered {
                        // A partition keeps its exclusive consumer until what it holds is settled or back in place:
                        // cancelled earlier, the next holder would take later messages while this one still handles
                        // an earlier one. Once its handler is done, closing the channel returns the rest in order.
                        guard await inFlight.waitUntilIdle(timeout: .seconds(86_400)) else { return }
                        await consumer.close()
                    } else {
                        try? await consumer.cancel()
                    }
                }
                defer { group.cancelAll() }
                try await consume(consumer, shutdown: shutdown)
            }
        } catch is CancellationError {
            // Cancelled (the grace period is over, or the worker's task was cancelled): interrupted handlers requeued
            // their messages.
        } catch {
            // The connection or channel is gone: handlers still running cannot settle (the broker redelivers).
            logger.debug("consumer ended", metadata: ["queue": "\(source)", "error": "\(error)"])
            await consumer.close()
            throw error
        }
        await consumer.close()
    }

    /// Takes deliveries until the consumer ends: each handled in order (`concurrency` 1) or in a child task, at most
    /// `concurrency` at a time; a delivery that arrives after a shutdown is requeued, not started.
    private func consume(_ consumer: TransportConsumer, shutdown: ShutdownSignal) async throws {
        if concurrency == 1 {
            // One at a time: handled in this task, in order, without a task per delivery.
            for try await delivery in consumer {
                progress.tookDelivery()
                if ordered {
                    // Counted in before the flags are read: a handover's close waits for no handler in flight, so it
                    // cannot come between this check and the handler.
                    started()
                    if shutdown.isTriggered || release.value {
                        // Left unsettled: its channel's close returns it to its place.
                        finished()
                        break
                    }
                    await handle(delivery)
                    finished()
                    continue
                }
                if shutdown.isTriggered {
                    requeueUnstarted(delivery)
                    continue
                }
                started()
                await handle(delivery)
                finished()
            }
        } else {
            let limiter = ConcurrencyLimiter(limit: concurrency)
            try await withThrowingDiscardingTaskGroup { group in
                for try await delivery in consumer {
                    progress.tookDelivery()
                    if shutdown.isTriggered {
                        requeueUnstarted(delivery)
                        continue
                    }
                    await limiter.acquire()
                    if shutdown.isTriggered {
                        limiter.release()
                        requeueUnstarted(delivery)
                        continue
                    }
                    started()
                    group.addTask {
                        await handle(delivery)
                        finished()
                        limiter.release()
                    }
                }
            }
        }
    }

    private func started() {
        metrics.inFlight.record(inFlight.enter())
    }

    private func finished() {
        metrics.inFlight.record(inFlight.leave())
    }

    /// Returns a delivery that arrived after the shutdown to its queue, and reports it.
    private func requeueUnstarted(_ delivery: TransportDelivery) {
        report(
            delivery, attempt: attempt(of: delivery), outcome: requeue(delivery), duration: .zero, failure: nil,
            trace: nil,
            logger: logger)
    }

    /// The registration for `type`; with a single handler (the usual case) without hashing the type.
    private func handler(for type: String) -> HandlerRegistration? {
        if let onlyHandler { return onlyHandler.messageType == type ? onlyHandler : nil }
        return handlers[type]
    }

    private func attempt(of delivery: TransportDelivery) -> Int {
        max(1, Int(clamping: delivery.properties.headers?.header(WarrenHeader.attempt)?.int64Value ?? 1))
    }

    func handle(_ delivery: TransportDelivery) async {
        let clock = ContinuousClock()
        let started = clock.now
        let properties = delivery.properties
        var headers = properties.headers ?? [:]
        let firstAttempt = attempt(of: delivery)
        let trace =
            tracing.enabled
            ? DeliveryTrace.begin(
                delivery, headers: &headers, queue: queue, attempt: firstAttempt, tracer: tracer,
                relation: tracing.processSpanRelation)
            : nil
        let type = properties.warrenMessageType
        // An ordered partition's delivery whose channel went (the connection dropped) is the broker's again, in its
        // place: handled here, it would run before the earlier ones its next holder handles.
        if ordered, !delivery.canSettle { return abandon(delivery, attempt: firstAttempt, trace: trace) }
        let redelivery =
            ordered
            ? await orderedVerdict(delivery)
            : RedeliveryVerdict.decide(redelivered: delivery.redelivered, headers: headers, limit: redeliveryLimit)
        if case .reenqueue(let returns, let isolated) = redelivery {
            let outcome = await reenqueue(
                delivery, headers: headers, returns: returns, isolated: isolated, trace: trace)
            trace?.finish(outcome: outcome, failure: nil)
            report(
                delivery, attempt: firstAttempt, outcome: outcome, duration: clock.now - started, failure: nil,
                trace: trace,
                logger: logger)
            return
        }

        var handling: Handling
        var attempt = firstAttempt
        var attemptStarted = started
        if let refusal = refusal(of: delivery, redelivery: redelivery) {
            handling = Handling(failure: refusal)
        } else if let type, let registration = handler(for: type) {
            if let events { events.record(startedEvent(delivery, type: type, attempt: attempt, trace: trace)) }
            if let codec = codecs.codec(for: properties.contentType) {
                handling = await run(
                    registration, codec: codec, delivery, type: type, headers: headers, attempt: attempt,
                    started: started, trace: trace)
                // An ordered partition retries in place: the key's later messages wait behind this one.
                while ordered, let failure = handling.failure, !handling.interrupted,
                    case .retry(let asked, let nextAttempt) = FailureDecision.decide(
                        failure: failure, attempt: attempt, policy: registration.options.retry,
                        jitterSample: Double.random(in: 0..<1))
                {
                    // A handler's own RetryAfter is capped at the policy's longest delay: the bound checked against
                    // the broker's consumer_timeout at start holds.
                    let delay = min(asked, registration.options.retry.longestDelay)
                    guard delivery.canSettle else { return abandon(delivery, attempt: attempt, trace: trace) }
                    report(
                        delivery, attempt: attempt, outcome: .retried(delay: delay, nextAttempt: nextAttempt),
                        duration: clock.now - attemptStarted, failure: failure, failedAtMs: Self.nowMilliseconds(),
                        trace: trace, logger: logger)
                    guard await waitUnlessShutdown(delay) else {
                        // Stopping: left unsettled, it returns to the head of its partition when the channel closes
                        // (a requeue now would hand it back to this consumer), where the next holder finds it first.
                        trace?.finish(outcome: .requeued, failure: nil)
                        report(
                            delivery, attempt: nextAttempt, outcome: .requeued, duration: .zero, failure: nil,
                            trace: trace, logger: logger)
                        return
                    }
                    guard delivery.canSettle else { return abandon(delivery, attempt: nextAttempt, trace: trace) }
                    attempt = nextAttempt
                    attemptStarted = clock.now
                    if let events { events.record(startedEvent(delivery, type: type, attempt: attempt, trace: trace)) }
                    handling = await run(
                        registration, codec: codec, delivery, type: type, headers: headers, attempt: attempt,
                        started: attemptStarted, trace: trace)
                }
            } else {
                handling = Handling(failure: .unsupportedContentType(properties.contentType ?? ""))
            }
        } else {
            handling = Handling(failure: .unknownType(type))
        }

        let (outcome, failedAtMs) = await settle(
            delivery, handling, type: type, headers: headers, attempt: attempt, trace: trace)
        if let replayMark = handling.replayMark, !handling.duplicate, outcome != .requeued {
            do { try await replayMark.store.record(replayMark.messageID, scope: replayMark.scope) } catch {
                logger.warning(
                    "could not remember a replay's copy", metadata: ["queue": "\(queue)", "error": "\(error)"])
            }
        }
        trace?.finish(outcome: outcome, failure: handling.failure?.summary)
        report(
            delivery, attempt: attempt, outcome: outcome, duration: clock.now - attemptStarted,
            failure: handling.failure, failedAtMs: failedAtMs, duplicate: handling.duplicate, trace: trace,
            logger: logger)
    }

    /// An ordered partition's verdict on a delivery: a returned one (its holder died, or stopped, before settling it)
    /// is counted on the broker first, and goes to the dead letters past the redelivery limit; it stays at the head
    /// either way. When the count cannot be kept (the broker refused), it is handled uncounted, with a warning.
    private func orderedVerdict(_ delivery: TransportDelivery) async -> RedeliveryVerdict {
        guard delivery.redelivered, let redeliveryLimit else { return .handle }
        let key = OrderedDelivery.key(messageID: delivery.properties.messageID, body: delivery.body)
        do {
            let returns = try await worker.transport.countReturn(of: key, in: source)
            return returns > redeliveryLimit ? .deadLetter(returns: returns, limit: redeliveryLimit) : .handle
        } catch {
            logger.warning(
                "could not count a returned message of an ordered partition; handling it uncounted",
                metadata: ["queue": "\(source)", "error": "\(error)"])
            return .handle
        }
    }

    /// Leaves an ordered partition's delivery whose channel went unhandled: the broker returned it to its place, and the
    /// partition's next holder (this process once it reconnects, or another) handles it in order.
    private func abandon(_ delivery: TransportDelivery, attempt: Int, trace: DeliveryTrace?) {
        trace?.finish(outcome: .requeued, failure: nil)
        report(
            delivery, attempt: attempt, outcome: .requeued, duration: .zero, failure: nil, trace: trace, logger: logger)
    }

    /// Waits `delay`; `false` when a stop (``untilStopped(timeout:)``) or the task's cancellation comes first.
    private func waitUnlessShutdown(_ delay: Duration) async -> Bool {
        !(await untilStopped(timeout: delay)) && !Task.isCancelled
    }

    /// Returns once the worker shuts down, an ordered partition is handed over (``release``), `timeout` passed, or the
    /// task is cancelled: `true` when one of the stops came.
    private func untilStopped(timeout: Duration?) async -> Bool {
        let (shutdown, release, ordered) = (worker.shutdownSignal, release, ordered)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await shutdown.wait() }
            if ordered { group.addTask { try? await release.wait { $0 } } }
            if let timeout { group.addTask { try? await Task.sleep(for: timeout) } }
            await group.next()
            group.cancelAll()
        }
        return shutdown.isTriggered || (ordered && release.value)
    }

    /// What became of a delivery's handling.
    private struct Handling {
        var failure: HandlingFailure?
        /// The worker is stopping and interrupted the handler.
        var interrupted = false
        /// An idempotency store knew the message: not handled again.
        var duplicate = false
        /// A replay's copy to remember once settled (see ``run(_:codec:_:type:headers:attempt:started:trace:)``).
        var replayMark: (store: any IdempotencyStore, messageID: String, scope: String)?
    }

    /// Why a delivery is not handled at all, before its type is looked at: its redelivery limit spent, too large, or
    /// an encoding Warren cannot read.
    private func refusal(of delivery: TransportDelivery, redelivery: RedeliveryVerdict) -> HandlingFailure? {
        if case .deadLetter(let returns, let limit) = redelivery {
            return .redeliveryLimit(returns: returns, limit: limit)
        }
        if delivery.body.count > maximumMessageBytes {
            return .tooLarge(bytes: delivery.body.count, limit: maximumMessageBytes)
        }
        if let encoding = delivery.properties.contentEncoding, !encoding.isEmpty, encoding.lowercased() != "identity" {
            return .unsupportedContentEncoding(encoding)
        }
        return nil
    }

    /// Runs the handler (unless an idempotency store knows the message), within its timeout and its trace.
    private func run(
        _ registration: HandlerRegistration, codec: any MessageCodec, _ delivery: TransportDelivery, type: String,
        headers: AMQPTable,
        attempt: Int, started: ContinuousClock.Instant, trace: DeliveryTrace?
    ) async -> Handling {
        let properties = delivery.properties
        let context = MessageContext(
            messageID: properties.messageID, correlationID: properties.correlationID, messageType: type,
            headers: headers, attempt: attempt, firstEnqueuedAt: firstEnqueuedAt(properties),
            redelivered: delivery.redelivered, queue: queue, baseLogger: logger,
            publisher: WarrenPublisher(
                transport: worker.transport, codec: codec, tracing: tracing, events: configuration.events),
            traceID: trace?.traceID, spanID: trace?.spanID)
        var handling = Handling()
        do {
            let store = registration.options.idempotency
            let scope = store == nil ? "" : "\(queue)/\(type)"
            // The first attempt of a replay's copy is remembered once settled, so a second copy of the same
            // replay (republished after a crash between the broker's confirm and the ledger's commit) is dropped.
            if let store, let id = properties.messageID, attempt == 1,
                let replay = headers.header(WarrenHeader.replayID)?.stringValue
            {
                handling.replayMark = (store, id, "\(scope)/replay/\(replay)")
            }
            if let store, let id = properties.messageID, try await store.contains(id, scope: scope) {
                handling.duplicate = true
            } else if let replayMark = handling.replayMark,
                try await replayMark.store.contains(replayMark.messageID, scope: replayMark.scope)
            {
                handling.duplicate = true
            } else {
                if let timeout = registration.options.timeout {
                    let token = progress.handlerStarted(deadline: started.advanced(by: timeout))
                    defer { progress.handlerEnded(token) }
                    try await withTimeout(timeout) {
                        try await Self.inTrace(trace) { try await registration.process(delivery.body, codec, context) }
                    }
                } else if let traced = trace?.context {
                    try await ServiceContext.withValue(traced) {
                        try await registration.process(delivery.body, codec, context)
                    }
                } else {
                    // No escaping closure (and no allocation for it) when there is no time limit.
                    try await registration.process(delivery.body, codec, context)
                }
                if let store, let id = properties.messageID { try await store.record(id, scope: scope) }
            }
        } catch let error as UndecodableBody {
            handling.failure = .undecodable(error.detail)
        } catch let error as HandlerTimedOut {
            handling.failure = .timedOut(error.limit)
        } catch {
            handling.interrupted = Task.isCancelled
            handling.failure = .handlerError(error)
        }
        return handling
    }

    /// Settles the delivery as its handling says: acked; requeued when a shutdown interrupted its handler (no attempt
    /// spent); else retried or dead-lettered by its policy, the copy confirmed first. Returns the outcome and, for a
    /// failure, when it failed.
    private func settle(
        _ delivery: TransportDelivery, _ handling: Handling, type: String?, headers: AMQPTable, attempt: Int,
        trace: DeliveryTrace?
    ) async -> (SettlementEvent.Outcome, failedAtMs: Int64?) {
        if let failure = handling.failure, handling.interrupted {
            // The worker is stopping and interrupted the handler: not the message's fault, so no attempt is spent.
            logger.debug(
                "handler interrupted by shutdown", metadata: ["queue": "\(queue)", "error": "\(failure.summary)"])
            return (requeue(delivery), nil)
        }
        if let failure = handling.failure {
            let decision = FailureDecision.decide(
                failure: failure, attempt: attempt, policy: type.flatMap(handler(for:))?.options.retry ?? .never,
                jitterSample: Double.random(in: 0..<1))
            let now = Self.nowMilliseconds()
            let outcome = await settle(
                delivery, headers: headers, failure: failure, decision: decision, attempt: attempt, failedAtMs: now,
                trace: trace)
            return (outcome, now)
        }
        do {
            try delivery.ack()
            return (.acked, nil)
        } catch {
            trace?.record(error)
            metrics.droppedSettlement()
            logger.warning(
                "could not ack; the broker will redeliver", metadata: ["queue": "\(queue)", "error": "\(error)"])
            return (.requeued, nil)
        }
    }

    /// Runs `operation` in the delivery's trace context, when it has one.
    private static func inTrace(_ trace: DeliveryTrace?, _ operation: () async throws -> Void) async throws {
        if let context = trace?.context {
            try await ServiceContext.withValue(context) { try await operation() }
        } else {
            try await operation()
        }
    }

    /// Publishes the retry or dead-letter copy, confirmed, then acks the original; requeues the original when the
    /// copy was not confirmed.
    /// - Parameters:
    ///   - headers: the delivery's headers, their trace context validated (an invalid one is not copied).
    ///   - failedAtMs: the failure's time: the copy's `x-warren-last-failure-at` and its event's time, so that a ledger
    ///     taking the dead letter off its queue finds the event it belongs to.
    private func settle(
        _ delivery: TransportDelivery, headers: AMQPTable, failure: HandlingFailure, decision: FailureDecision,
        attempt: Int,
        failedAtMs nowMillis: Int64, trace: DeliveryTrace?
    ) async -> SettlementEvent.Outcome {
        var headers = headers
        if headers[WarrenHeader.firstEnqueuedAt]?.int64Value == nil {
            let enqueued = UnixMilliseconds.from(delivery.properties.timestamp) ?? nowMillis
            headers[WarrenHeader.firstEnqueuedAt] = .int64(enqueued)
        }
        if headers[WarrenHeader.firstFailureAt]?.int64Value == nil {
            headers[WarrenHeader.firstFailureAt] = .int64(nowMillis)
        }
        headers[WarrenHeader.lastFailureAt] = .int64(nowMillis)
        headers[WarrenHeader.errorType] = .string(failure.errorType)
        headers[WarrenHeader.errorMessage] = .string(String(failure.summary.prefix(DeadLetterReason.longestDetail)))

        let destination: Destination
        let outcome: SettlementEvent.Outcome
        switch decision {
        case .retry(let delay, let nextAttempt):
            headers[WarrenHeader.attempt] = .int64(Int64(nextAttempt))
            destination = .delay(queue: queue, delay: delay)
            outcome = .retried(delay: delay, nextAttempt: nextAttempt)
        case .deadLetter(let reason):
            headers = DeadLetter.headers(
                headers, reason: reason, exchange: delivery.exchange, routingKey: delivery.routingKey, queue: queue,
                attempts: attempt, host: configuration.hostName)
            destination = .deadLetters(queue: queue)
            outcome = .deadLettered(reason)
        }
        var properties = delivery.properties
        properties.headers = headers
        do {
            try await worker.transport.publish(delivery.body, to: destination, properties: properties)
        } catch {
            trace?.record(error)
            logger.error(
                "the \(outcome.name) copy was not confirmed; requeueing the original",
                metadata: ["queue": "\(queue)", "error": "\(error)"])
            return requeue(delivery)
        }
        do {
            try delivery.ack()
            return outcome
        } catch {
            // The copy is safe but the original could not be acked: the broker redelivers it, a duplicate that the
            // at-least-once contract allows.
            trace?.record(error)
            metrics.droppedSettlement()
            logger.warning(
                "could not ack after copying; the broker will redeliver",
                metadata: ["queue": "\(queue)", "error": "\(error)"])
            return outcome
        }
    }

    /// Publishes a copy of a redelivered message with its return count, confirmed, then acks the original: the count
    /// lives in the message, so it survives the process crashing on the next attempt.
    private func reenqueue(
        _ delivery: TransportDelivery, headers: AMQPTable, returns: Int, isolated: Bool, trace: DeliveryTrace?
    ) async -> SettlementEvent.Outcome {
        var properties = delivery.properties
        properties.headers = headers.merging([WarrenHeader.redeliveries: .int64(Int64(returns))]) { $1 }
        let target = isolated ? WarrenTopology(queue: queue).redeliveredQueue : queue
        do {
            try await worker.transport.publish(delivery.body, to: .queue(target), properties: properties)
        } catch {
            trace?.record(error)
            logger.error(
                "the counted copy of a redelivered message was not confirmed; requeueing the original",
                metadata: ["queue": "\(queue)", "error": "\(error)"])
            return requeue(delivery)
        }
        logger.notice(
            "redelivered message re-enqueued with its count",
            metadata: [
                "queue": "\(queue)", "to": "\(target)", "message_id": "\(delivery.properties.messageID ?? "")",
                "redeliveries": .stringConvertible(returns),
            ])
        do { try delivery.ack() } catch {
            metrics.droppedSettlement()
            logger.warning(
                "could not ack after copying; the broker will redeliver",
                metadata: ["queue": "\(queue)", "error": "\(error)"])
        }
        return .requeued
    }

    private func firstEnqueuedAt(_ properties: AMQPProperties) -> Date? {
        if let millis = UnixMilliseconds.from(properties.headers?.header(WarrenHeader.firstEnqueuedAt)?.int64Value) {
            return Date(timeIntervalSince1970: Double(millis) / 1000)
        }
        return properties.timestamp
    }

    /// When the message last entered a queue, in ms since the epoch: its last failure (it then waited out a retry
    /// delay), else Warren's publish time or, for a message published due at a time, its due time (the wait it was
    /// meant to have is not queue wait) — `nil` for a message without either (a foreign publisher's): its AMQP
    /// timestamp has whole seconds, and a wait from it would look precise while off by up to a second.
    private func enqueuedAtMilliseconds(_ properties: AMQPProperties) -> Int64? {
        let headers = properties.headers
        if let failed = UnixMilliseconds.from(headers?.header(WarrenHeader.lastFailureAt)?.int64Value) { return failed }
        guard let published = UnixMilliseconds.from(headers?.header(WarrenHeader.publishedAt)?.int64Value) else {
            return nil
        }
        return max(published, UnixMilliseconds.from(headers?.header(WarrenHeader.dueAt)?.int64Value) ?? published)
    }

    /// For a message without ``enqueuedAtMilliseconds(_:)`` (the caller found none): the wait since its AMQP
    /// timestamp, in whole seconds — said to be approximate wherever it is shown, and kept out of
    /// `warren_queue_wait_seconds`.
    private static func approximateQueueWaitSeconds(_ properties: AMQPProperties, startedMs: Int64) -> Int64? {
        UnixMilliseconds.from(properties.timestamp).map { max(0, (startedMs - $0) / 1000) }
    }

    private func requeue(_ delivery: TransportDelivery) -> SettlementEvent.Outcome {
        do { try delivery.requeue() } catch {
            metrics.droppedSettlement()
            logger.debug(
                "could not requeue; the broker will redeliver", metadata: ["queue": "\(queue)", "error": "\(error)"])
        }
        return .requeued
    }

    private func report(
        _ delivery: TransportDelivery, attempt: Int, outcome: SettlementEvent.Outcome, duration: Duration,
        failure: HandlingFailure?, failedAtMs: Int64? = nil, duplicate: Bool = false, trace: DeliveryTrace?,
        logger: Logger
    ) {
        let properties = delivery.properties
        // The time in the queue before this attempt: up to when its handling began (`duration` ago), not its settlement.
        let startedMs = Self.nowMilliseconds() - duration.milliseconds
        let wait = enqueuedAtMilliseconds(properties).map { Duration.milliseconds(max(0, startedMs - $0)) }
        let event = SettlementEvent(
            messageID: properties.messageID,
            messageType: properties.warrenMessageType, queue: queue,
            attempt: attempt, outcome: outcome, duration: duration, queueWait: wait, error: failure?.summary,
            duplicate: duplicate)
        // A scheduled run's settlement is one line at info even when it succeeds: an operator follows each run. (An
        // ack that would not be logged even at info does not look at the headers: the per-delivery path.)
        var ackLogsOnlyAtDebug = false
        if case .acked = outcome { ackLogsOnlyAtDebug = logger.logLevel > .info }
        let scheduled = ackLogsOnlyAtDebug ? nil : properties.headers.flatMap(ScheduledRun.init(headers:))
        let level: Logger.Level =
            switch outcome {
            case .acked: scheduled == nil ? .debug : .info
            case .retried: .warning
            case .requeued: .notice
            case .deadLettered: .error
            }
        if logger.logLevel <= level {
            var metadata: Logger.Metadata = [
                "message_id": "\(properties.messageID ?? "")",
                "type": "\(event.messageType ?? "")",
                "queue": "\(queue)",
                "attempt": .stringConvertible(attempt),
                "outcome": "\(outcome.name)",
                "duration_ms": .stringConvertible(duration.milliseconds),
            ]
            if let wait {
                metadata["queue_wait_ms"] = .stringConvertible(wait.milliseconds)
            } else if let approximate = Self.approximateQueueWaitSeconds(properties, startedMs: startedMs) {
                metadata["queue_wait_approx_s"] = .stringConvertible(approximate)
                metadata["queue_wait_source"] = "amqp_timestamp"
            }
            if duplicate { metadata["duplicate"] = .stringConvertible(true) }
            if let scheduled { metadata.merge(scheduled.logMetadata) { $1 } }
            if let traceID = trace?.traceID { metadata["trace_id"] = "\(traceID)" }
            if let spanID = trace?.spanID { metadata["span_id"] = "\(spanID)" }
            if let error = event.error { metadata["error"] = "\(error)" }
            switch outcome {
            case .retried(let delay, _): metadata["retry_delay_ms"] = .stringConvertible(delay.milliseconds)
            case .deadLettered(let reason): metadata["reason"] = "\(reason.kind.rawValue)"
            default: break
            }
            logger.log(level: level, "settled", metadata: metadata)
        }
        metrics.record(event)
        worker.observer?(event)
        if let events {
            var settled = settlementEvent(
                event, delivery: delivery, failedAtMs: failedAtMs, trace: trace, options: events.options)
            if wait == nil {
                settled.queueWaitApproxS = Self.approximateQueueWaitSeconds(properties, startedMs: startedMs)
            }
            events.record(settled)
        }
    }

    private static func nowMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    private func startedEvent(_ delivery: TransportDelivery, type: String, attempt: Int, trace: DeliveryTrace?)
        -> WarrenEvent
    {
        let now = Self.nowMilliseconds()
        let properties = delivery.properties
        let wait = enqueuedAtMilliseconds(properties).map { max(0, now - $0) }
        var event = WarrenEvent(
            event: .started, messageID: properties.messageID, type: type, queue: queue, attempt: attempt, atMs: now,
            queueWaitMs: wait, host: configuration.hostName, traceID: trace?.traceID,
            correlationID: properties.correlationID)
        if wait == nil { event.queueWaitApproxS = Self.approximateQueueWaitSeconds(properties, startedMs: now) }
        event.describeTiming(from: properties.headers)
        return event
    }

    private func settlementEvent(
        _ settlement: SettlementEvent, delivery: TransportDelivery, failedAtMs: Int64?, trace: DeliveryTrace?,
        options: EventOptions
    ) -> WarrenEvent {
        let now = failedAtMs ?? Self.nowMilliseconds()
        let kind: WarrenEvent.Kind =
            switch settlement.outcome {
            case .acked: .ack
            case .retried: .retry
            case .deadLettered: .deadLetter
            case .requeued: .requeued
            }
        var event = WarrenEvent(
            event: kind, messageID: settlement.messageID, type: settlement.messageType, queue: queue,
            attempt: settlement.attempt,
            atMs: now, queueWaitMs: settlement.queueWait?.milliseconds, durationMs: settlement.duration.milliseconds,
            error: settlement.error, host: configuration.hostName, traceID: trace?.traceID,
            correlationID: delivery.properties.correlationID)
        // A settlement may stand for its start too (folded into it): it says what the start would have.
        event.describeTiming(from: delivery.properties.headers)
        switch settlement.outcome {
        case .retried(let delay, _):
            event.nextAttemptAtMs = now + delay.milliseconds
        case .deadLettered(let reason):
            event.reason = reason.kind.rawValue
            var content: DeadLetterContent? = DeadLetterContent(
                body: delivery.body, headers: delivery.properties.headers ?? [:])
            if let type = settlement.messageType, let redact = options.redact[type], let original = content {
                content = redact(original)
            }
            if let content { event.attach(content, bodyLimit: options.deadLetterBodyLimit) }
        default:
            break
        }
        return event
    }
}
