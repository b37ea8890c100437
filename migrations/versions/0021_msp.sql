-- Services (MSP) tables added at revision 0017 (people, expenses, contract_progress),
-- frozen here so a later model change needs its own revision.

CREATE TABLE people (
	book_id UUID NOT NULL, 
	name TEXT NOT NULL, 
	currency TEXT NOT NULL, 
	cost_rate NUMERIC NOT NULL, 
	role TEXT, 
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, 
	CONSTRAINT pk_people PRIMARY KEY (book_id, name), 
	CONSTRAINT ck_people_cost_rate CHECK (cost_rate >= 0)
);

CREATE TABLE expenses (
	book_id UUID NOT NULL, 
	id UUID NOT NULL, 
	contract_id UUID NOT NULL, 
	customer_id UUID NOT NULL, 
	person TEXT NOT NULL, 
	date DATE NOT NULL, 
	description TEXT NOT NULL, 
	currency TEXT NOT NULL, 
	cost NUMERIC NOT NULL, 
	markup_percent NUMERIC, 
	billable_amount NUMERIC NOT NULL, 
	billable BOOLEAN DEFAULT 'true' NOT NULL, 
	receipt JSONB, 
	status TEXT DEFAULT 'draft' NOT NULL, 
	invoice_id UUID, 
	invoice_line SMALLINT, 
	external_id TEXT, 
	adjusts UUID, 
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, 
	CONSTRAINT pk_expenses PRIMARY KEY (book_id, id), 
	CONSTRAINT fk_expenses_book_id_contract_id_contracts FOREIGN KEY(book_id, contract_id) REFERENCES contracts (book_id, id), 
	CONSTRAINT fk_expenses_book_id_adjusts_expenses FOREIGN KEY(book_id, adjusts) REFERENCES expenses (book_id, id), 
	CONSTRAINT ck_expenses_amounts CHECK ((cost >= 0 and billable_amount >= 0) or adjusts is not null), 
	CONSTRAINT ck_expenses_status CHECK (status in ('draft', 'approved', 'invoiced'))
);

CREATE INDEX ix_expenses_contract_id_book_id_status ON expenses (contract_id, book_id, status);

CREATE TABLE contract_progress (
	book_id UUID NOT NULL, 
	contract_id UUID NOT NULL, 
	seq INTEGER NOT NULL, 
	kind TEXT NOT NULL, 
	date DATE NOT NULL, 
	percent_complete NUMERIC NOT NULL, 
	earned NUMERIC NOT NULL, 
	billed NUMERIC NOT NULL, 
	invoice_id UUID, 
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, 
	CONSTRAINT pk_contract_progress PRIMARY KEY (book_id, contract_id, seq), 
	CONSTRAINT fk_contract_progress_book_id_contract_id_contracts FOREIGN KEY(book_id, contract_id) REFERENCES contracts (book_id, id), 
	CONSTRAINT ck_contract_progress_kind CHECK (kind in ('progress', 'adjustment', 'billed')), 
	CONSTRAINT ck_contract_progress_percent CHECK (percent_complete between 0 and 100)
);
