import Foundation
import Logging
import WarrenAMQP

/// Consumes one work queue and settles each delivery.
struct QueueRunner: Sendable {
    let queue: String
    let handlers: [String: HandlerRegistration]
    let prefetch: UInt16
    let concurrency: Int
    let configuration: WorkerConfiguration
    let topology: TopologyDeclarer
    let publisher: AMQPChannel
    let logger: Logger

    init(
        queue: String, registrations: [HandlerRegistration], configuration: WorkerConfiguration,
        topology: TopologyDeclarer, publisher: AMQPChannel, logger: Logger
    ) {
        self.queue = queue
        self.handlers = Dictionary(registrations.map { ($0.messageType, $0) }, uniquingKeysWith: { first, _ in first })
        self.prefetch = registrations.map(\.options.prefetch).max() ?? 20
        self.concurrency = registrations.map(\.options.maxConcurrentHandlers).max() ?? 1
        self.configuration = configuration
        self.topology = topology
        self.publisher = publisher
        self.logger = logger
    }

    /// The outcome of one delivery, as logged.
    enum Outcome: String {
        case ack
        case retry
        case deadLetter = "dead-letter"
        case requeue
    }

    func run(on connection: AMQPConnection) async throws {
        let channel = try await connection.openChannel()
        let consumer = try await channel.consume(queue: queue, prefetchCount: prefetch)
        let limiter = ConcurrencyLimiter(limit: concurrency)
        logger.info("consuming", metadata: ["queue": "\(queue)", "prefetch": "\(prefetch)", "concurrency": "\(concurrency)"])
        await withDiscardingTaskGroup { group in
            do {
                for try await delivery in consumer {
                    await limiter.acquire()
                    group.addTask {
                        await handle(delivery)
                        limiter.release()
                    }
                }
            } catch is CancellationError {
                // Shutting down: stop taking deliveries; the group waits for the handlers already running.
            } catch {
                logger.error("consumer ended", metadata: ["queue": "\(queue)", "error": "\(error)"])
            }
        }
        try? await channel.close()
    }

    func handle(_ delivery: AMQPDelivery) async {
        let clock = ContinuousClock()
        let started = clock.now
        let properties = delivery.properties
        let headers = properties.headers ?? [:]
        let attempt = max(1, Int(clamping: headers[WarrenHeader.attempt]?.int64Value ?? 1))
        let type = properties.type.flatMap { $0.isEmpty ? nil : $0 } ?? headers[WarrenHeader.messageType]?.stringValue
        var jobLogger = logger
        jobLogger[metadataKey: "message_id"] = "\(properties.messageID ?? "")"
        jobLogger[metadataKey: "type"] = "\(type ?? "")"
        jobLogger[metadataKey: "queue"] = "\(queue)"
        jobLogger[metadataKey: "attempt"] = "\(attempt)"

        let failure: HandlingFailure?
        var interrupted = false
        if delivery.body.count > configuration.maximumMessageBytes {
            failure = .tooLarge(bytes: delivery.body.count, limit: configuration.maximumMessageBytes)
        } else if let type, !type.isEmpty, let registration = handlers[type] {
            if let codec = configuration.codecs.codec(for: properties.contentType) {
                let context = MessageContext(
                    messageID: properties.messageID, correlationID: properties.correlationID, messageType: type,
                    headers: headers, attempt: attempt, firstEnqueuedAt: firstEnqueuedAt(properties),
                    redelivered: delivery.redelivered, queue: queue, logger: jobLogger)
                do {
                    try await withTimeout(registration.options.timeout) {
                        try await registration.process(delivery.body, codec, context)
                    }
                    failure = nil
                } catch let error as UndecodableBody {
                    failure = .undecodable(error.detail)
                } catch let error as HandlerTimedOut {
                    failure = .timedOut(error.limit)
                } catch {
                    if Task.isCancelled {
                        interrupted = true
                    }
                    failure = .handlerError(error)
                }
            } else {
                failure = .unsupportedContentType(properties.contentType ?? "")
            }
        } else {
            failure = .unknownType(type.flatMap { $0.isEmpty ? nil : $0 })
        }

        let outcome: Outcome
        var decision: FailureDecision?
        if failure != nil, interrupted {
            // The worker is shutting down and interrupted the handler: not the message's fault, so no attempt is
            // spent; the broker delivers it again.
            settle { try delivery.nack(requeue: true) }
            outcome = .requeue
        } else if let failure {
            let decided = FailureDecision.decide(
                failure: failure, attempt: attempt, policy: handlers[type ?? ""]?.options.retry ?? .never,
                jitterSample: Double.random(in: 0..<1))
            decision = decided
            outcome = await settle(delivery, failure: failure, decision: decided, attempt: attempt)
        } else {
            outcome = settle { try delivery.ack() } ? .ack : .requeue
        }

        let elapsed = clock.now - started
        var metadata: Logger.Metadata = [
            "outcome": "\(outcome.rawValue)",
            "duration_ms": "\(elapsed.milliseconds)",
        ]
        if let waited = queueWait(properties) { metadata["queue_wait_ms"] = "\(waited)" }
        if let failure { metadata["error"] = "\(failure.summary)" }
        if case .retry(let delay, _)? = decision { metadata["retry_delay_ms"] = "\(delay.milliseconds)" }
        if case .deadLetter(let reason)? = decision { metadata["reason"] = "\(reason.kind.rawValue)" }
        let level: Logger.Level = switch outcome {
        case .ack: .debug
        case .retry: .warning
        case .requeue: .notice
        case .deadLetter: .error
        }
        jobLogger.log(level: level, "settled", metadata: metadata)
    }

    /// Publishes the retry or dead-letter copy, confirmed, then acks the original; nacks it with requeue when the
    /// copy could not be confirmed.
    private func settle(_ delivery: AMQPDelivery, failure: HandlingFailure, decision: FailureDecision, attempt: Int) async -> Outcome {
        let now = Date()
        var headers = delivery.properties.headers ?? [:]
        let nowMillis = Int64(now.timeIntervalSince1970 * 1000)
        if headers[WarrenHeader.firstEnqueuedAt] == nil {
            let enqueued = delivery.properties.timestamp.map { Int64($0.timeIntervalSince1970 * 1000) } ?? nowMillis
            headers[WarrenHeader.firstEnqueuedAt] = .int64(enqueued)
        }
        if headers[WarrenHeader.firstFailureAt]?.int64Value == nil { headers[WarrenHeader.firstFailureAt] = .int64(nowMillis) }
        headers[WarrenHeader.lastFailureAt] = .int64(nowMillis)
        headers[WarrenHeader.errorType] = .string(failure.errorType)
        headers[WarrenHeader.errorMessage] = .string(String(failure.summary.prefix(2000)))

        var properties = delivery.properties
        let exchange: String
        let routingKey: String
        let outcome: Outcome
        switch decision {
        case .retry(let delay, let nextAttempt):
            headers[WarrenHeader.attempt] = .int64(Int64(nextAttempt))
            do {
                try await topology.ensureDelayQueue(queue: queue, delay: delay)
            } catch {
                logger.error("cannot declare a delay queue", metadata: ["queue": "\(queue)", "error": "\(error)"])
                settle { try delivery.nack(requeue: true) }
                return .requeue
            }
            exchange = ""
            routingKey = topology.topology(for: queue).delayQueue(for: delay)
            outcome = .retry
        case .deadLetter(let reason):
            headers[WarrenHeader.reason] = .string(reason.kind.rawValue)
            headers[WarrenHeader.errorMessage] = .string(String(reason.detail.prefix(2000)))
            headers[WarrenHeader.originalExchange] = .string(delivery.exchange)
            headers[WarrenHeader.originalRoutingKey] = .string(delivery.routingKey)
            headers[WarrenHeader.originalQueue] = .string(queue)
            headers[WarrenHeader.attempts] = .int64(Int64(attempt))
            headers[WarrenHeader.host] = .string(configuration.hostName)
            exchange = WarrenTopology.deadLetterExchange
            routingKey = queue
            outcome = .deadLetter
        }
        properties.headers = headers
        do {
            try await publisher.publish(delivery.body, exchange: exchange, routingKey: routingKey, mandatory: true, properties: properties)
        } catch {
            logger.error(
                "the \(outcome.rawValue) copy was not confirmed; requeueing the original",
                metadata: ["queue": "\(queue)", "error": "\(error)"])
            settle { try delivery.nack(requeue: true) }
            return .requeue
        }
        return settle { try delivery.ack() } ? outcome : .requeue
    }

    /// Runs a settlement; false when the channel was already gone (the broker redelivers the message).
    @discardableResult
    private func settle(_ action: () throws -> Void) -> Bool {
        do {
            try action()
            return true
        } catch {
            logger.warning("could not settle a delivery; the broker will redeliver it", metadata: ["queue": "\(queue)", "error": "\(error)"])
            return false
        }
    }

    private func firstEnqueuedAt(_ properties: AMQPProperties) -> Date? {
        if let millis = properties.headers?[WarrenHeader.firstEnqueuedAt]?.int64Value {
            return Date(timeIntervalSince1970: Double(millis) / 1000)
        }
        return properties.timestamp
    }

    /// How long the message waited between being published (its AMQP timestamp) and now, in ms.
    private func queueWait(_ properties: AMQPProperties) -> Int64? {
        guard let timestamp = properties.timestamp else { return nil }
        return max(0, Int64(Date().timeIntervalSince(timestamp) * 1000))
    }
}
