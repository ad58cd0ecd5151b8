import ArgumentParser
import Foundation
import Warren
import WarrenAMQP

struct DeadLetters: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlx", abstract: "Inspect, replay and purge a queue's dead letters.",
        subcommands: [List.self, Show.self, Replay.self, Purge.self])

    /// A dead letter as the CLI shows it (JSON keys in snake_case).
    struct Letter: Codable {
        var messageID: String?
        var type: String?
        var reason: String?
        var error: String?
        var errorType: String?
        var attempts: Int?
        var originalExchange: String?
        var originalRoutingKey: String?
        var originalQueue: String?
        var failedAt: String?
        var host: String?
        var headers: [String: String]?
        var body: String?
        var bodyEncoding: String?

        enum CodingKeys: String, CodingKey {
            case messageID = "message_id"
            case type, reason, error
            case errorType = "error_type"
            case attempts
            case originalExchange = "original_exchange"
            case originalRoutingKey = "original_routing_key"
            case originalQueue = "original_queue"
            case failedAt = "failed_at"
            case host, headers, body
            case bodyEncoding = "body_encoding"
        }

        init(_ letter: DeadLetter, details: Bool) {
            messageID = letter.messageID
            type = letter.messageType
            reason = letter.reason?.kind.rawValue
            error = letter.reason?.detail
            errorType = letter.errorType
            attempts = letter.attempts
            originalExchange = letter.originalExchange
            originalRoutingKey = letter.originalRoutingKey
            originalQueue = letter.originalQueue
            host = letter.host
            failedAt = letter.lastFailedAt.map { ISO8601DateFormatter().string(from: $0) }
            if details {
                headers = (letter.properties.headers ?? [:]).mapValues { value in
                    value.stringValue ?? value.int64Value.map(String.init) ?? "\(value)"
                }
                if let text = String(validating: letter.body, as: UTF8.self) {
                    body = text
                    bodyEncoding = "utf-8"
                } else {
                    body = Data(letter.body).base64EncodedString()
                    bodyEncoding = "base64"
                }
            }
        }
    }

    /// Fetches up to `limit` dead letters without settling them, so they stay in the queue (closing the channel
    /// returns them). Calls `body` with the channel and the deliveries, in queue order.
    static func withDeadLetters<T>(
        of queue: String, connection: AMQPConnection, limit: Int? = nil,
        _ body: (AMQPChannel, [AMQPDelivery]) async throws -> T
    ) async throws -> T {
        let deadLetterQueue = WarrenTopology(queue: queue).deadLetterQueue
        let channel = try await connection.openChannel()
        let status: AMQPQueueStatus
        do {
            status = try await channel.queueStatus(deadLetterQueue)
        } catch let error as AMQPError where error.replyCode == 404 {
            throw fail(
                "there is no queue '\(deadLetterQueue)': '\(queue)' is not a work queue a Warren worker has declared (check the name, and the vhost of --url)"
            )
        }
        let available = status.messageCount
        if status.consumerCount > 0 {
            FileHandle.standardError.write(Data(takenNote(queue, consumers: status.consumerCount).utf8))
        }
        var letters: [AMQPDelivery] = []
        let bound = min(available, limit ?? available)
        while letters.count < bound, let result = try await channel.get(queue: deadLetterQueue) {
            letters.append(result.delivery)
        }
        let value = try await body(channel, letters)
        try? await channel.close()  // whatever was not acked goes back to the dead letters
        return value
    }

    /// Where the dead letters went when something consumes the dead-letter queue: a ledger took them.
    static func takenNote(_ queue: String, consumers: Int) -> String {
        """
        warren: \(consumers) consumer(s) take the dead letters of \(queue) off \(WarrenTopology(queue: queue).deadLetterQueue): \
        a ledger (warren-dashboard) holds them; use --dashboard URL (token in WARREN_DASHBOARD_TOKEN) to list, replay or purge them there

        """
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the dead letters of a queue without consuming them.")
        @OptionGroup var connection: ConnectionOptions
        @Option(help: "The work queue.") var queue: String
        @Option(help: "At most this many.") var limit: Int?
        @Flag(help: "Print a JSON array.") var json = false
        @OptionGroup var dashboard: DashboardOptions

        func run() async throws {
            if let client = try dashboard.client() {
                let page = try await client.get(
                    "/api/dead-letters", query: [("queue", queue), ("limit", "\(min(limit ?? 500, 500))")])
                let rows = page["dead_letters"] as? [[String: Any]] ?? []
                if json {
                    try printJSON(rows.map(DashboardClient.Row.init))
                    return
                }
                for row in rows {
                    print(
                        "\(row["message_id"] as? String ?? "")  \(row["type"] as? String ?? "(no type)")  \(row["reason"] as? String ?? "?")  at \(DashboardClient.time(row["at_ms"]))  \(DashboardClient.whereNow(row))"
                    )
                    if let error = row["error"] as? String { print("    \(error)") }
                }
                print(
                    "\(rows.count) dead letter(s) of \(queue) in the ledger\(page["next"] is String ? " (more: see the dashboard)" : "")"
                )
                return
            }
            let letters = try await connection.withConnection { connection in
                try await withDeadLetters(of: queue, connection: connection, limit: limit) { _, deliveries in
                    deliveries.map { Letter(DeadLetter(body: $0.body, properties: $0.properties), details: false) }
                }
            }
            if json {
                try printJSON(letters)
                return
            }
            if letters.isEmpty {
                print("no dead letters for \(queue)")
                return
            }
            for letter in letters {
                print(
                    "\(letter.messageID ?? "(no id)")  \(letter.type ?? "(no type)")  \(letter.reason ?? "?")  attempts \(letter.attempts ?? 0)  from '\(letter.originalExchange ?? "")'/\(letter.originalRoutingKey ?? "")  at \(letter.failedAt ?? "?")"
                )
                if let error = letter.error { print("    \(error)") }
            }
            print("\(letters.count) dead letter(s)")
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one dead letter in full: headers and body.")
        @OptionGroup var connection: ConnectionOptions
        @Option(help: "The work queue.") var queue: String
        @Option(name: .customLong("message-id"), help: "Its message id.") var messageID: String
        @OptionGroup var dashboard: DashboardOptions

        func run() async throws {
            if let client = try dashboard.client() {
                let found = try await client.get("/api/dead-letters/\(DashboardClient.pathComponent(messageID))")
                try printJSON((found["dead_letters"] as? [[String: Any]] ?? []).map(DashboardClient.Row.init))
                return
            }
            let letter = try await connection.withConnection { connection in
                try await withDeadLetters(of: queue, connection: connection) { _, deliveries in
                    deliveries.first { $0.properties.messageID == messageID }
                        .map { Letter(DeadLetter(body: $0.body, properties: $0.properties), details: true) }
                }
            }
            guard let letter else { throw fail("no dead letter with message id \(messageID) for \(queue)") }
            try printJSON(letter)
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Send dead letters back to their work queue with a fresh attempt count (confirmed), then remove them.")
        @OptionGroup var connection: ConnectionOptions
        @Option(help: "The work queue.") var queue: String
        @Option(name: .customLong("message-id"), help: "The message to replay.") var messageID: String?
        @Flag(help: "Replay every dead letter of the queue.") var all = false
        @Option(help: "Where to report each replay, for a ledger to record (a `replayed` event).")
        var eventsExchange = "warren.events"
        @Flag(help: "Report no `replayed` events.") var noEvents = false
        @OptionGroup var dashboard: DashboardOptions

        func validate() throws {
            if (messageID == nil) == !all { throw ValidationError("give exactly one of --message-id and --all") }
        }

        func run() async throws {
            if let client = try dashboard.client() {
                let operation = try await client.run("replay", queue: queue, messageID: messageID)
                print(
                    "replayed \(operation.settled) of \(operation.total) message(s) to \(queue) (operation \(operation.id))"
                )
                return
            }
            let replayed = try await connection.withConnection { connection in
                let events: [WarrenEvent]
                do {
                    events = try await DeadLetterReplay.replay(
                        from: queue, on: connection, replayID: "cli-\(UUID().uuidString.lowercased())"
                    ) { all || $0.properties.messageID == messageID }
                } catch let error as AMQPError where error.replyCode == 404 {
                    throw fail(
                        "there is no queue '\(WarrenTopology(queue: queue).deadLetterQueue)': '\(queue)' is not a work queue a Warren worker has declared (check the name, and the vhost of --url)"
                    )
                }
                if !noEvents {
                    do {
                        try await DeadLetterReplay.report(events, on: connection, exchange: eventsExchange)
                    } catch {
                        FileHandle.standardError.write(
                            Data("warren: replayed, but the `replayed` events were not sent: \(describe(error))\n".utf8)
                        )
                    }
                }
                return events.count
            }
            if let messageID, replayed == 0 { throw fail("no dead letter with message id \(messageID) for \(queue)") }
            print("replayed \(replayed) message(s) to \(queue)")
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete every dead letter of a queue.")
        @OptionGroup var connection: ConnectionOptions
        @Option(help: "The work queue.") var queue: String
        @Option(name: .customLong("message-id"), help: "Only this message's (with --dashboard).") var messageID: String?
        @Flag(help: "Confirm: the dead letters are gone for good.") var yes = false
        @OptionGroup var dashboard: DashboardOptions

        func run() async throws {
            guard yes else { throw fail("purging deletes the dead letters for good: add --yes") }
            if let client = try dashboard.client() {
                let operation = try await client.run("purge", queue: queue, messageID: messageID)
                print(
                    "purged \(operation.settled) of \(operation.total) dead letter(s) of \(queue) (operation \(operation.id))"
                )
                return
            }
            guard messageID == nil else {
                throw fail("--message-id needs --dashboard: a queue's dead letters are purged all at once")
            }
            let count = try await connection.withConnection { connection in
                try await connection.openChannel().queuePurge(WarrenTopology(queue: queue).deadLetterQueue)
            }
            print("purged \(count) dead letter(s) of \(queue)")
        }
    }
}
