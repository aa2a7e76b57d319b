"""Reimbursement (eZWM): incontinence-supply orders, monthly realisations, subsidy and settlements."""
