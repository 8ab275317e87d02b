//! svlogd's standard input, cut into lines in one fixed buffer: each read
//! fills the room after what is left of the last line, whole lines are
//! handed out in place (so they can be rewritten in place, for `-r`), and a
//! line longer than the buffer goes out in pieces as the buffer fills.

use memchr::memchr;

use crate::logdir::Piece;

/// The read buffer and where the next line starts.
pub struct Input {
    buffer: Box<[u8]>,
    /// Bytes before `start` are handed out; `start..end` wait for their newline.
    start: usize,
    end: usize,
    /// The line being cut began in an earlier piece.
    in_long_line: bool,
}

impl Input {
    pub fn new(capacity: usize) -> Input {
        Input {
            buffer: vec![0; capacity.max(1)].into_boxed_slice(),
            start: 0,
            end: 0,
            in_long_line: false,
        }
    }

    /// Where the next read goes: never empty.
    pub fn room(&mut self) -> &mut [u8] {
        &mut self.buffer[self.end..]
    }

    /// `n` bytes were read into [`Input::room`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buffer.len());
    }

    /// Hands each whole line read (without its newline) to `deliver`, then
    /// the buffer's content as a piece when it is full without a newline.
    /// Stops at the first error, which it returns.
    pub fn cut<E>(&mut self, mut deliver: impl FnMut(&mut [u8], Piece) -> Result<(), E>) -> Result<(), E> {
        while let Some(at) = memchr(b'\n', &self.buffer[self.start..self.end]) {
            let piece = if self.in_long_line { Piece::Last } else { Piece::Whole };
            let line = self.start..self.start + at;
            self.start += at + 1;
            self.in_long_line = false;
            deliver(&mut self.buffer[line], piece)?;
        }
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.end == self.buffer.len() {
            if self.start > 0 {
                // Room for the rest of the line.
                self.buffer.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            } else {
                let piece = if self.in_long_line { Piece::Middle } else { Piece::First };
                let all = 0..self.end;
                (self.start, self.end) = (0, 0);
                self.in_long_line = true;
                deliver(&mut self.buffer[all], piece)?;
            }
        }
        Ok(())
    }

    /// At the end of the input: the last line, which had no newline (or
    /// the end of a long line whose pieces went out), as a line.
    pub fn rest(&mut self) -> Option<(&mut [u8], Piece)> {
        let rest = self.start..self.end;
        (self.start, self.end) = (0, 0);
        let piece = match (self.in_long_line, rest.is_empty()) {
            (false, true) => return None,
            (false, false) => Piece::Whole,
            (true, _) => Piece::Last,
        };
        self.in_long_line = false;
        Some((&mut self.buffer[rest], piece))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `reads` through an input of `capacity`; what came out.
    fn cut_all(capacity: usize, reads: &[&str]) -> Vec<(String, Piece)> {
        let mut input = Input::new(capacity);
        let mut out = Vec::new();
        let mut take = |bytes: &mut [u8], piece| {
            out.push((String::from_utf8(bytes.to_vec()).unwrap(), piece));
            Ok::<(), ()>(())
        };
        for read in reads {
            let mut left = read.as_bytes();
            while !left.is_empty() {
                let room = input.room();
                let n = room.len().min(left.len());
                room[..n].copy_from_slice(&left[..n]);
                input.filled(n);
                left = &left[n..];
                input.cut(&mut take).unwrap();
            }
        }
        if let Some((bytes, piece)) = input.rest() {
            take(bytes, piece).unwrap();
        }
        out
    }

    fn owned(pieces: &[(&str, Piece)]) -> Vec<(String, Piece)> {
        pieces.iter().map(|&(s, p)| (s.to_owned(), p)).collect()
    }

    #[test]
    fn lines_come_out_whole_across_reads() {
        use Piece::*;
        assert_eq!(
            cut_all(16, &["one\ntw", "o\n\nthree\n"]),
            owned(&[("one", Whole), ("two", Whole), ("", Whole), ("three", Whole)])
        );
        // A last line without a newline is still a line.
        assert_eq!(cut_all(16, &["a\nlast"]), owned(&[("a", Whole), ("last", Whole)]));
        assert_eq!(cut_all(16, &[]), owned(&[]));
        // A line that fills the buffer exactly with its newline is whole.
        assert_eq!(cut_all(4, &["abc\n"]), owned(&[("abc", Whole)]));
    }

    #[test]
    fn a_line_longer_than_the_buffer_comes_in_pieces() {
        use Piece::*;
        assert_eq!(
            cut_all(4, &["0123456789\nab\n"]),
            owned(&[("0123", First), ("4567", Middle), ("89", Last), ("ab", Whole)])
        );
        // Ending at the input's end: the last piece ends it.
        assert_eq!(
            cut_all(4, &["01234567"]),
            owned(&[("0123", First), ("4567", Middle), ("", Last)])
        );
        // What was left of a line moves to the front to make room.
        assert_eq!(
            cut_all(6, &["ab\ncdef", "gh\n"]),
            owned(&[("ab", Whole), ("cdefgh", First), ("", Last)])
        );
    }
}
