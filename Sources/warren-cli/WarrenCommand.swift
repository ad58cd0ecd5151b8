import ArgumentParser
import Foundation
import Logging
import Warren
import WarrenAMQP

/// `warren`: publish messages and look after the dead letters, from a shell.
@main
struct WarrenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warren",
        abstract: "Publish messages, inspect and replay dead letters, show a queue's topology.",
        discussion: "Every command takes --url, or reads WARREN_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/).",
        subcommands: [Publish.self, DeadLetters.self, Topology.self, Schedules.self]
    )
}

struct ConnectionOptions: ParsableArguments {
    @Option(
        help:
            "Broker URI (or several, comma-separated). Default: WARREN_AMQP_URL, then amqp://guest:guest@127.0.0.1:5672/."
    )
    var url: String?

    func connect() async throws -> AMQPConnection {
        let uri = url ?? ProcessInfo.processInfo.environment["WARREN_AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/"
        var quiet = Logger(label: "warren.cli")
        quiet.logLevel = .critical
        return try await AMQPConnection.connect(
            to: AMQPEndpoint.parseList(uri), connectionName: "warren-cli", logger: quiet)
    }

    /// Runs `body` with a transport on the broker (it connects on first use, never waits for a lost connection),
    /// closed afterwards whatever happens; any error becomes one line on stderr and a non-zero exit.
    func withTransport<T>(_ body: (RabbitMQTransport) async throws -> T) async throws -> T {
        let uri = url ?? ProcessInfo.processInfo.environment["WARREN_AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/"
        var quiet = Logger(label: "warren.cli")
        quiet.logLevel = .critical
        let transport: RabbitMQTransport
        do {
            transport = RabbitMQTransport(
                endpoints: try AMQPEndpoint.parseList(uri), connectionName: "warren-cli", publishRecoveryTimeout: .zero,
                logger: quiet)
        } catch {
            throw fail(describe(error))
        }
        do {
            let value = try await body(transport)
            await transport.close()
            return value
        } catch {
            await transport.close()
            throw (error as? ExitCode) ?? fail(describe(error))
        }
    }

    /// Connects, runs `body`, and closes the connection whatever happens; any error becomes one line on stderr and
    /// a non-zero exit.
    func withConnection<T>(_ body: (AMQPConnection) async throws -> T) async throws -> T {
        let connection: AMQPConnection
        do { connection = try await connect() } catch { throw fail(describe(error)) }
        do {
            let value = try await body(connection)
            await connection.close()
            return value
        } catch {
            await connection.close()
            throw (error as? ExitCode) ?? fail(describe(error))
        }
    }
}

/// Prints `value` as pretty, key-sorted JSON.
func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// Prints a one-line error on stderr and exits non-zero, instead of a stack of context.
func fail(_ message: String) -> ExitCode {
    FileHandle.standardError.write(Data("warren: \(message)\n".utf8))
    return ExitCode(1)
}

func describe(_ error: any Error) -> String {
    if let error = error as? AMQPError {
        var text = error.message
        if let code = error.replyCode { text += " (\(code)\(error.replyText.map { " \($0)" } ?? ""))" }
        return text
    }
    return "\(error)"
}

struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish one message (confirmed, mandatory) and print its message id.")

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Routing key (for the default exchange: the queue name).") var routingKey: String
    @Option(help: "Exchange; the default exchange when omitted.") var exchange = ""
    @Option(help: "The message type (AMQP type property), e.g. email.welcome.") var type: String
    @Option(help: "The body, as JSON.") var body: String?
    @Option(help: "A file holding the body.") var bodyFile: String?
    @Option(name: .customLong("header"), help: "A header as key=value (repeatable).") var headers: [String] = []
    @Option(help: "Message id; a new UUID when omitted.") var messageID: String?
    @Option(help: "Correlation id.") var correlationID: String?
    @Option(help: "Content type.") var contentType = "application/json"
    @Option(help: "The topic exchange job events go to (a ledger records the message as published).")
    var eventsExchange = "warren.events"
    @Flag(help: "Report no `published` event.") var noEvents = false

    func validate() throws {
        if (body == nil) == (bodyFile == nil) { throw ValidationError("give exactly one of --body and --body-file") }
        for header in headers where !header.contains("=") {
            throw ValidationError("--header takes key=value, not '\(header)'")
        }
    }

    func run() async throws {
        let bytes: [UInt8]
        if let body {
            bytes = Array(body.utf8)
        } else {
            guard let data = FileManager.default.contents(atPath: bodyFile!) else {
                throw fail("cannot read \(bodyFile!)")
            }
            bytes = Array(data)
        }
        var table: AMQPTable = [:]
        for header in headers {
            let parts = header.split(separator: "=", maxSplits: 1)
            table[String(parts[0])] = .string(parts.count > 1 ? String(parts[1]) : "")
        }
        let id = messageID ?? UUID().uuidString.lowercased()
        // What Warren's own publishers set and a worker reads: the publish time in milliseconds (the AMQP timestamp
        // has whole seconds), for the queue wait and the ledger.
        let headers = table
        try await connection.withConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            // Stamped now that the connection is made, so that the queue wait does not count the handshake.
            let now = Date()
            let publishedAtMs = Int64((now.timeIntervalSince1970 * 1000).rounded(.down))
            var stamped = headers
            if stamped[WarrenHeader.publishedAt] == nil { stamped[WarrenHeader.publishedAt] = .int64(publishedAtMs) }
            let properties = AMQPProperties(
                contentType: contentType, headers: stamped, deliveryMode: .persistent,
                correlationID: correlationID, messageID: id, timestamp: now, type: type, appID: "warren-cli")
            try await channel.publish(
                bytes, exchange: exchange, routingKey: routingKey, mandatory: true, properties: properties)
            guard !noEvents else { return }
            // The `published` event, as WarrenPublisher(events:) reports it: confirmed, not mandatory (nothing bound,
            // nothing kept). A failure here is a warning: the message itself is published.
            let queue = exchange.isEmpty ? routingKey : "\(exchange):\(routingKey)"
            let event = WarrenEvent(
                event: .published, messageID: id, type: type, queue: queue, atMs: publishedAtMs,
                correlationID: correlationID)
            do {
                try await channel.exchangeDeclare(eventsExchange, type: .topic, durable: true)
                try await channel.publish(
                    WarrenEvent.encodeBatch([event]), exchange: eventsExchange, routingKey: "\(queue).published",
                    properties: AMQPProperties(
                        contentType: "application/json", deliveryMode: .persistent, type: "warren.events"))
            } catch {
                FileHandle.standardError.write(
                    Data("warren: published, but the `published` event was not sent: \(describe(error))\n".utf8))
            }
        }
        print(id)
    }
}

struct Topology: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "What Warren declared for a queue: work, delay and dead-letter queues, with depths and consumers.")

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "The work queue.") var queue: String
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let rows = try await connection.withConnection { try await WarrenTopology(queue: queue).inspect(on: $0) }
        if json {
            try printJSON(rows)
            return
        }
        print("role          queue                                              messages  consumers  delay")
        for row in rows {
            let name = row.name.padding(toLength: max(50, row.name.count), withPad: " ", startingAt: 0)
            let messages = row.exists ? "\(row.messages ?? 0)" : "missing"
            print(
                "\(row.role.padding(toLength: 13, withPad: " ", startingAt: 0)) \(name) \(pad(messages, 8))  \(pad(row.exists ? "\(row.consumers ?? 0)" : "-", 9))  \(row.delayMilliseconds.map { "\($0) ms" } ?? "")"
            )
        }
        print("dead-letter exchange: \(WarrenTopology.deadLetterExchange) (routing key \(queue))")
    }
}

func pad(_ text: String, _ width: Int) -> String {
    String(repeating: " ", count: max(0, width - text.count)) + text
}
