//! The rule every special price obeys: a member price, a member-day price, a flash-sale price and
//! a group-buy price are each at least 1 fen and at most the product's list price. A special
//! price is a benefit; one above list would charge a member more for being a member, and one of
//! 0 gives the goods away (a free gift is a coupon or a lottery prize, not a price).
//!
//! The rule is checked where a special price is set (422 naming the field). Because the list price
//! can be lowered afterwards, the price charged is also capped when an order is priced:
//! [`charged`] never returns more than the list price.

use std::fmt;

/// Why a special price was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialPriceError {
    /// Below 1 fen.
    BelowOneFen { price: i64 },
    /// Above the product's list price.
    AboveList { price: i64, list_price: i64 },
}

impl fmt::Display for SpecialPriceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecialPriceError::BelowOneFen { price } => write!(
                f,
                "must be at least 1 fen (got {price}); a free item is a coupon or a prize, not a price"
            ),
            SpecialPriceError::AboveList { price, list_price } => write!(
                f,
                "must not be above the product's list price of {list_price} fen (got {price})"
            ),
        }
    }
}

/// Check a special price against the product's list price (both in fen).
pub fn check_special(price: i64, list_price: i64) -> Result<i64, SpecialPriceError> {
    if price < 1 {
        Err(SpecialPriceError::BelowOneFen { price })
    } else if price > list_price {
        Err(SpecialPriceError::AboveList { price, list_price })
    } else {
        Ok(price)
    }
}

/// The unit price charged for a special price set earlier, if the list price has since been
/// lowered below it: never more than list.
pub fn charged(special: i64, list_price: i64) -> i64 {
    special.min(list_price)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_special_price_is_one_fen_to_list() {
        assert_eq!(check_special(1, 1200), Ok(1));
        assert_eq!(check_special(1200, 1200), Ok(1200));
        assert_eq!(check_special(999, 1200), Ok(999));
    }

    #[test]
    fn zero_negative_and_above_list_are_refused() {
        assert_eq!(
            check_special(0, 1200),
            Err(SpecialPriceError::BelowOneFen { price: 0 })
        );
        assert_eq!(
            check_special(-5, 1200),
            Err(SpecialPriceError::BelowOneFen { price: -5 })
        );
        assert_eq!(
            check_special(1500, 1200),
            Err(SpecialPriceError::AboveList {
                price: 1500,
                list_price: 1200
            })
        );
        // A free product admits no special price at all.
        assert!(check_special(1, 0).is_err());
    }

    #[test]
    fn the_error_names_the_list_price() {
        let text = check_special(1500, 1200).unwrap_err().to_string();
        assert!(text.contains("1200"), "{text}");
        assert!(text.contains("1500"), "{text}");
    }

    #[test]
    fn charged_never_exceeds_list() {
        assert_eq!(charged(900, 1200), 900);
        assert_eq!(charged(900, 800), 800);
        assert_eq!(charged(1200, 1200), 1200);
    }
}
