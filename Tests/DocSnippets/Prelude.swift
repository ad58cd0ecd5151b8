// What the documents' Swift blocks use without declaring it (a mail client, a registration defined in another
// block, …): declared once here so that each block compiles as written. The blocks themselves are generated into
// this target by the DocSnippets plugin from README.md and docs/*.md.
import Foundation
import Logging
import ServiceLifecycle
import Warren
import WarrenAMQP

struct Mailer: Sendable {
    func send(to address: String) async throws {}
}

let mailer = Mailer()
let url = "amqp://guest:guest@127.0.0.1:5672/"
let requestID = "request-1"
let body: [UInt8] = Array(#"{"order":1}"#.utf8)
let id = "message-1"
let batch: [AMQPOutboundMessage] = []
let logger = Logger(label: "docs")

struct ValidationError: Error {}

struct HTTPServer: Service {
    func run() async throws {}
}

let httpServer = HTTPServer()

/// docs/scheduling.md's recurring job and the work its examples lead.
struct Cleanup: WarrenMessage {
    static var messageType: String { "maintenance.cleanup" }
    var olderThan: Date
}

func removeExpiredCarts(olderThan: Date) async throws {}

/// docs/scheduling.md's jobs at a time.
struct ReportReminder: WarrenMessage {
    static var messageType: String { "reports.reminder" }
    var orderID: String
}

let cutoff = Date()
let tomorrowAtNine = Date().addingTimeInterval(86_400)
func compactOldPartitions() async throws {}

struct SendInvoice: MessageHandler {
    struct Invoice: WarrenMessage {
        static var messageType: String { "invoice.send" }
        var number: Int
    }

    func handle(_ invoice: Invoice, context: MessageContext) async throws {}
}

var emailsRegistration: HandlerRegistration {
    HandlerRegistration(WelcomeEmail.self, queue: "emails") { email, _ in try await mailer.send(to: email.email) }
}

var emails: HandlerRegistration { emailsRegistration }

/// The connection, channel, worker and transport that a document's later blocks use after an earlier block made them.
/// This target is compiled, never run: nothing reads these.
var connection: AMQPConnection { fatalError("documentation blocks are compiled, not run") }
var channel: AMQPChannel { fatalError("documentation blocks are compiled, not run") }
var worker: Worker { fatalError("documentation blocks are compiled, not run") }
var transport: RabbitMQTransport { fatalError("documentation blocks are compiled, not run") }
var publisher: WarrenPublisher { fatalError("documentation blocks are compiled, not run") }
var context: MessageContext { fatalError("documentation blocks are compiled, not run") }
