//! Text that a guest chose (stderr tails, map entry names, logs) shown on the
//! operator's terminal: control characters are escaped, so a guest cannot
//! move the cursor, rewrite earlier lines, or send the terminal commands.

/// `text` with every control character but newline and tab escaped (`\u{1b}`).
pub(crate) fn printable(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_lines_kept() {
        assert_eq!(printable("ok\tline\nnext"), "ok\tline\nnext");
        assert_eq!(printable("\u{1b}[2J\rgone\u{7}"), "\\u{1b}[2J\\rgone\\u{7}");
        assert_eq!(printable("entry \u{9b}31m"), "entry \\u{9b}31m");
    }
}
