import Synchronization
import Warren

/// The message most tests send: a welcome email, which handlers fail or bounce by its domain.
package struct WelcomeEmail: WarrenMessage {
    package static var messageType: String { "email.welcome" }
    package var userId: String
    package var email: String

    package init(userId: String, email: String) {
        self.userId = userId
        self.email = email
    }
}

/// What handlers saw, for assertions.
package final class Recorder: Sendable {
    package struct Call: Sendable {
        package var email: String
        package var attempt: Int
        package var at: ContinuousClock.Instant
        package var redelivered: Bool
    }

    private let calls = Mutex<[Call]>([])

    package init() {}

    package func record(_ email: WelcomeEmail, _ context: MessageContext) {
        calls.withLock {
            $0.append(Call(email: email.email, attempt: context.attempt, at: .now, redelivered: context.redelivered))
        }
    }

    package func calls(for email: String) -> [Call] { calls.withLock { $0.filter { $0.email == email } } }
}

/// A transient failure, retried.
package struct Flaky: Error, CustomStringConvertible {
    package var description: String { "mail server busy" }

    package init() {}
}
