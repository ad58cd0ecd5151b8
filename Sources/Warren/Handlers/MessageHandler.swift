/// A handler as a type, for handlers with dependencies or state of their own:
///
/// ```swift
/// struct SendWelcomeEmail: MessageHandler {
///     let mailer: Mailer
///     func handle(_ email: WelcomeEmail, context: MessageContext) async throws {
///         try await mailer.send(to: email.email)
///     }
/// }
/// HandlerRegistration(SendWelcomeEmail(mailer: mailer), queue: "emails")
/// ```
///
/// Return to acknowledge; throw to retry (see ``RetryPolicy``), or throw ``Reject`` for the dead letters at once.
public protocol MessageHandler: Sendable {
    associatedtype Message: WarrenMessage
    func handle(_ message: Message, context: MessageContext) async throws
}

extension HandlerRegistration {
    /// Registers a handler type for its message type on `queue`.
    public init<H: MessageHandler>(_ handler: H, queue: String, options: HandlerOptions = HandlerOptions()) {
        self.init(H.Message.self, queue: queue, options: options) { message, context in
            try await handler.handle(message, context: context)
        }
    }
}
