//! A thin layer over ark-relations on which the gadgets are written by hand.
//!
//! A [`Wire`] is a linear combination of circuit variables together with its value. Additions
//! and multiplications by constants only combine linear combinations, so they cost no
//! constraint and allocate no variable; only [`Builder::mul`] and the explicit `enforce_*`
//! calls add constraints. That makes every gadget's constraint count readable off its code.
//!
//! When the constraint system only records an assignment (proving with precomputed matrices),
//! wires carry their value alone: the linear combinations are needed only to build matrices.

use ark_bn254::Fr;
use ark_ff::{One, Zero};
use ark_relations::r1cs::{ConstraintSystemRef, LinearCombination, SynthesisError, Variable};

/// A linear combination of circuit variables and the value it takes in the current assignment.
#[derive(Clone)]
pub(crate) struct Wire {
    value: Fr,
    /// `None` when the constraint system is not building matrices.
    lc: Option<LinearCombination<Fr>>,
    /// Whether the wire is a constant of the circuit (the same in every assignment); such a wire
    /// multiplies for free.
    constant: bool,
}

impl Wire {
    /// The wire's value in the current assignment.
    #[cfg(test)]
    pub(crate) fn value(&self) -> Fr {
        self.value
    }

    /// `self + other`: free.
    pub(crate) fn add(&self, other: &Wire) -> Wire {
        self.add_scaled(Fr::one(), other)
    }

    /// `self - other`: free.
    pub(crate) fn sub(&self, other: &Wire) -> Wire {
        self.add_scaled(-Fr::one(), other)
    }

    /// `self + coefficient * other`: free.
    pub(crate) fn add_scaled(&self, coefficient: Fr, other: &Wire) -> Wire {
        Wire {
            value: self.value + coefficient * other.value,
            lc: match (&self.lc, &other.lc) {
                (Some(lc), Some(other_lc)) => Some(lc + (coefficient, other_lc)),
                _ => None,
            },
            constant: self.constant && other.constant,
        }
    }

    /// `coefficient * self`: free.
    pub(crate) fn scale(&self, coefficient: Fr) -> Wire {
        Wire {
            value: self.value * coefficient,
            lc: self.lc.as_ref().map(|lc| lc * coefficient),
            constant: self.constant,
        }
    }

    /// `self + constant`: free.
    pub(crate) fn add_constant(&self, constant: Fr) -> Wire {
        Wire {
            value: self.value + constant,
            lc: self.lc.clone().map(|lc| lc + (constant, Variable::One)),
            constant: self.constant,
        }
    }

    fn lc_or_empty(&self) -> LinearCombination<Fr> {
        self.lc.clone().unwrap_or_default()
    }
}

/// Allocates variables and enforces constraints on one constraint system.
pub(crate) struct Builder {
    cs: ConstraintSystemRef<Fr>,
    symbolic: bool,
}

impl Builder {
    pub(crate) fn new(cs: ConstraintSystemRef<Fr>) -> Self {
        let symbolic = cs.should_construct_matrices();
        Builder { cs, symbolic }
    }

    fn variable(&self, value: Fr, variable: Variable) -> Wire {
        Wire {
            value,
            lc: self.symbolic.then(|| LinearCombination::from(variable)),
            constant: false,
        }
    }

    /// A constant of the circuit.
    pub(crate) fn constant(&self, value: Fr) -> Wire {
        Wire {
            value,
            lc: self.symbolic.then(|| {
                if value.is_zero() {
                    LinearCombination::zero()
                } else {
                    LinearCombination::from((value, Variable::One))
                }
            }),
            constant: true,
        }
    }

    /// A new public input.
    pub(crate) fn input(&self, value: Fr) -> Result<Wire, SynthesisError> {
        let variable = self.cs.new_input_variable(|| Ok(value))?;
        Ok(self.variable(value, variable))
    }

    /// A new private witness, unconstrained until used.
    pub(crate) fn witness(&self, value: Fr) -> Result<Wire, SynthesisError> {
        let variable = self.cs.new_witness_variable(|| Ok(value))?;
        Ok(self.variable(value, variable))
    }

    /// A private bit: one constraint, `b * (1 - b) = 0`.
    pub(crate) fn bit(&self, bit: bool) -> Result<Wire, SynthesisError> {
        let wire = self.witness(Fr::from(bit))?;
        let one_minus = self.constant(Fr::one()).sub(&wire);
        self.enforce_product(&wire, &one_minus, &self.constant(Fr::zero()))?;
        Ok(wire)
    }

    /// `a * b` as a new variable: one constraint, or none when either side is a constant.
    pub(crate) fn mul(&self, a: &Wire, b: &Wire) -> Result<Wire, SynthesisError> {
        if a.constant {
            return Ok(b.scale(a.value));
        }
        if b.constant {
            return Ok(a.scale(b.value));
        }
        let product = self.witness(a.value * b.value)?;
        self.enforce_product(a, b, &product)?;
        Ok(product)
    }

    /// Enforces `a * b = c`: one constraint.
    pub(crate) fn enforce_product(
        &self,
        a: &Wire,
        b: &Wire,
        c: &Wire,
    ) -> Result<(), SynthesisError> {
        self.cs
            .enforce_constraint(a.lc_or_empty(), b.lc_or_empty(), c.lc_or_empty())
    }

    /// Enforces `a = b`: one constraint, `(a - b) * 1 = 0`.
    pub(crate) fn enforce_equal(&self, a: &Wire, b: &Wire) -> Result<(), SynthesisError> {
        self.enforce_product(
            &a.sub(b),
            &self.constant(Fr::one()),
            &self.constant(Fr::zero()),
        )
    }
}
