import Warren

/// Stands in for an SMTP client, with failure modes chosen by the recipient's domain:
/// - `flaky.example`: a transient error on attempts 1 and 2, success on attempt 3;
/// - `bounce.example`: a permanent error (the mailbox does not exist);
/// - `slow.example`: takes 2 seconds;
/// - anything else: sent at once.
struct SimulatedMailSender: Sendable {
    struct ServerBusy: Error, CustomStringConvertible {
        var description: String { "421 mail server busy, try again later" }
    }

    func send(_ email: WelcomeEmail, attempt: Int) async throws {
        let domain = email.email.split(separator: "@").last.map { $0.lowercased() } ?? ""
        switch domain {
        case "flaky.example":
            if attempt < 3 { throw ServerBusy() }
        case "bounce.example":
            throw Reject("550 mailbox \(email.email) does not exist")
        case "slow.example":
            try await Task.sleep(for: .seconds(2))
        default:
            break
        }
    }
}
